"""Golden cases for the CV-Bench scorer: each verdict is what the authors' scripts in
cambrian-mllm/cambrian (commit 539ffc3) return, derived from their code path:
`eval/eval/{ade,coco}/*_test.py` for ADE20K and COCO rows, `eval/eval/omni/omni_test.py` for
Omni3D rows, functions `extract_mcq_answer` and the match in `compute_metrics`. The ground truth
"(B)" is compared as `gt_answer.lower()[1]` == "b".

Cases marked DEPARTURE are M2-format responses (think/answer tags, `\\boxed{}`): the official
scripts read their first character ("<" or "l": wrong); their verdict here is the official rule
applied to the answer our reader takes out of the tags and box (module docstring, departure 1).
"""

from __future__ import annotations

import pytest

from m2r.eval import cvbench
from m2r.eval.items import EvalItem

COUNT = ["1", "2", "3", "4"]  # one-character option texts (Count)
OBJECTS = ["lamp", "chair"]  # object-name option texts (Depth, Distance, Relation)

CASES = [
    # (source, options, response, official verdict)  # official code path
    ("COCO", COUNT, "B", True),  # extract_mcq_answer: one character, == "b"
    ("COCO", COUNT, "b", True),  # text.lower()
    ("COCO", COUNT, "  B \n", True),  # text.strip()
    ("COCO", COUNT, "(B)", True),  # .lstrip('(').rstrip(')')
    ("COCO", COUNT, "B.", True),  # .rstrip('.')
    ("COCO", COUNT, "(B).", True),  # rstrip('.') before lstrip('(')/rstrip(')')
    ("ADE20K", OBJECTS, "(((B)))", True),  # lstrip/rstrip remove every leading "(" and trailing ")"
    ("COCO", COUNT, "(B) 2", True),  # len(text) > 1: text[0] after lstrip('(') is "b"
    ("ADE20K", OBJECTS, "B) chair", True),  # len(text) > 1: first character "b"
    ("ADE20K", OBJECTS, "Both are near", True),  # len(text) > 1: first character "b" (lenient by accident)
    ("ADE20K", OBJECTS, "A", False),  # "a" != "b"
    ("COCO", COUNT, "Option B", False),  # no cue; first character "o"
    ("COCO", COUNT, "**B**", False),  # first character "*"
    ("COCO", COUNT, "", False),  # empty text: "" != "b"
    ("COCO", COUNT, "The correct option is (B).", False),  # no cue; first character "t"
    ("COCO", COUNT, "The answer is B.", True),  # cue "answer is": " b." -> strip, rstrip('.') -> "b"
    ("COCO", COUNT, "ANSWER IS (B)", True),  # cue after lower(); "(b)" -> "b"
    ("COCO", COUNT, "The answer is: (B)", False),  # cue "answer is" leaves ": (b)"; "answer is:" no longer present; first character ":"
    ("ADE20K", OBJECTS, "Answer: (B)", True),  # cue "answer:" only: " (b)" -> "b"
    ("ADE20K", OBJECTS, "The answer is A, no wait, the answer is B", True),  # split(...)[-1]: after the last "answer is"
    ("COCO", COUNT, "The answer is B. Answer: C", False),  # cues in turn: "answer is" -> " b. answer: c", then "answer:" -> " c"
    ("COCO", COUNT, "2", False),  # ADE20K/COCO compare with the letter only: "2" != "b"
    ("Omni3D", COUNT, "2", True),  # omni_test: answer == options[gt_pos] ("2")
    ("Omni3D", COUNT, "2,", True),  # omni: rstrip('.:,') -> "2" == option text
    ("COCO", COUNT, "2,", False),  # ade/coco: rstrip('.') keeps "2,", first character "2" != "b"
    ("Omni3D", COUNT, "(2):", True),  # omni: rstrip('.:,') -> "(2)" -> "2" == option text
    ("Omni3D", OBJECTS, "chair", False),  # first character "c": != "b" and != "chair" (text match needs a 1-char option)
    ("Omni3D", OBJECTS, "(B)", True),  # omni: letter match as for 2D
    ("Omni3D", ["X", "Y"], "Y", False),  # answer lower-cased to "y", option text "Y" not: case-sensitive text match
    ("Omni3D", OBJECTS, "The answer is:", False),  # omni: ":" -> strip, rstrip('.:,') -> "" != "b"
    # DEPARTURE (tags/box read first, then the official rule on what they hold):
    ("COCO", COUNT, "<think>A or B?</think><answer>\\boxed{B}</answer>", True),  # box "B" -> "b"
    ("COCO", COUNT, "<think>x</think><answer>\\boxed{(B)}</answer>", True),  # box "(B)" -> "b"
    ("COCO", COUNT, "<think>x</think><answer>\\boxed{A}</answer>", False),  # box "A" -> "a"
    ("COCO", COUNT, "<think>the answer is B</think><answer></answer>", False),  # empty answer: "" (reasoning never read; official: cue "answer is" in the reasoning gives "b", right)
    ("ADE20K", OBJECTS, "<think>x</think><answer>B</answer>", True),  # answer tag without a box: "B"
    ("ADE20K", OBJECTS, "<think>x</think><answer>The answer is \\boxed{B. chair}</answer>", True),  # box "B. chair" -> first character "b"
    ("ADE20K", OBJECTS, "<think>x</think>\nB", True),  # after </think>: "\nB" -> strip -> "b"
    ("COCO", COUNT, "Let me count. \\boxed{B}", True),  # no tags, a box: "B" (official: first character "l", wrong)
    ("COCO", COUNT, "<think>\\boxed{B}</think><answer>A</answer>", False),  # the box in the reasoning is not read: "A"
    ("COCO", COUNT, "<answer>\\boxed{A} or \\boxed{B}</answer>", True),  # the last box: "B"
]


@pytest.mark.parametrize("source, options, response, verdict", CASES)
def test_official_verdict(source, options, response, verdict):
    item = EvalItem(key={"idx": 0}, question="q", options=options, answer="B", meta={"source": source, "task": "Count"})
    assert cvbench.score(item, response)["correct"] is verdict


def test_ground_truth_parentheses_are_dropped_at_load(tmp_path):
    # The row's "(C)" is compared as its letter, as `gt_answer.lower()[1]` does.
    (tmp_path / "test.jsonl").write_text('{"idx": 7, "type": "3D", "task": "Depth", "filename": "img/7.png", "question": "q", "choices": ["a", "b", "c"], '
                                         '"answer": "(C)", "prompt": "q (A) a (B) b (C) c", "source": "Omni3D"}\n')
    item = cvbench.load(tmp_path)[0]
    assert item.answer == "C" and cvbench.score(item, "(C)")["correct"] and not cvbench.score(item, "(B)")["correct"]


def test_prompt_appends_the_official_instruction_once():
    item = EvalItem(key={"idx": 0}, question="q", options=["1", "2"], answer="A", meta={"prompt": "How many? Select from the following choices.\n(A) 1\n(B) 2"})
    assert cvbench.prompt(item) == "How many? Select from the following choices.\n(A) 1\n(B) 2\nAnswer with the option's letter from the given choices directly."
    item.meta["prompt"] = cvbench.prompt(item)
    assert cvbench.prompt(item) == item.meta["prompt"]


def test_overall_weights_sources_as_the_dataset_card():
    # ADE20K 1/1, COCO 0/3, Omni3D 2/4: ((1 + 0) / 2 + 0.5) / 2 = 0.5, not the pooled 3/8.
    sources = ["ADE20K", "COCO", "COCO", "COCO", "Omni3D", "Omni3D", "Omni3D", "Omni3D"]
    items = [EvalItem(key={"idx": i}, question="q", options=[], answer="A", meta={"source": s, "task": "Count"}) for i, s in enumerate(sources)]
    m = cvbench.aggregate(items, [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    assert m["overall"] == pytest.approx(0.5) and m["score"] == m["overall"] and m["source/COCO"] == 0.0
