"""Golden cases for DynaMath: hand-written responses with the verdict of the official scorer,
VLMEvalKit `vlmeval/dataset/dynamath.py` (open-compass/VLMEvalKit@e8e78f0), derived by reading
`preprocess`, `parse_answer` and `DynaMath_auxeval` and named next to each case.

Where the official path asks GPT to rewrite the response (the JSON failed or its short answer did
not parse, for float and multiple choice), the verdict is the official rule applied to the reply
GPT would give to its instruction ("Output the corresponing choice option ..." / "Output a
three-digit floating-point number ..."), written in the case's comment as `GPT -> "..."`; our
scorer replaces GPT by rules (module docstring, departure 1). Cases where our scorer departs on
purpose are in `DEPARTURES`, each with the official verdict beside ours.
"""

from __future__ import annotations

import pytest

from m2r.eval import dynamath
from m2r.eval.items import EvalItem

FLOAT, MC, TEXT = "float", "multiple choice", "text"


def J(short: str, solution: str = "...") -> str:
    return '{"solution": "%s", "short answer": "%s"}' % (solution, short)


def item(kind: str, gt: str, seed: str = "1", variant: int = 1, subject: str = "PG", level: str = "high school") -> EvalItem:
    return EvalItem(key={"id": seed, "variant": variant}, question="q", options=[], answer=gt, meta={"answer_type": kind, "subject": subject, "level": level})


CASES = [
    # --- float: JSON short answer read by parse_answer, right when |x - gt| <= 0.001 ---
    (FLOAT, "3.5", J("3.5"), True),  # parse_answer float: not isdigit -> split(' ')[0] -> transfer -> 3.5
    (FLOAT, "4.0", J("4"), True),  # parse_answer float: isdigit -> float("4")
    (FLOAT, "3.5", J("3.5004"), True),  # DynaMath_auxeval float: diff 0.0004 <= 0.001
    (FLOAT, "3.5", J("3.502"), False),  # DynaMath_auxeval float: diff 0.002 > 0.001
    (FLOAT, "2.0", J("1.9985"), False),  # diff 0.0015
    (FLOAT, "3.5", J("3.5 cm"), True),  # parse_answer float: first space-separated token "3.5"
    (FLOAT, "6.283", J("2π"), True),  # transfer: "2" before π, times π = 6.28319
    (FLOAT, "2.094", J("2π/3"), False),  # transfer reads only the part before π: 2π = 6.283 != 2.094 (parsed, so no GPT)
    (FLOAT, "3.142", J("π"), True),  # transfer(float("")) fails -> whole cut response fails -> GPT -> "3.142"
    (FLOAT, "3.5", J(" 3.5"), True),  # split(' ')[0] == "" fails -> GPT -> "3.500"
    (FLOAT, "1234.5", J("1,234.5"), True),  # float("1,234.5") fails -> GPT -> "1234.500"
    (FLOAT, "3.5", J("\\\\frac{7}{2}"), True),  # preprocess drops backslashes: "frac{7}{2}" fails -> GPT -> "3.500"
    (FLOAT, "0.5", J("1/2"), True),  # float("1/2") fails -> GPT -> "0.500"
    (FLOAT, "1.414", J("√2"), True),  # float("√2") fails -> GPT -> "1.414"
    (FLOAT, "-3.5", J("−3.5"), True),  # Unicode minus: float fails -> GPT -> "-3.500"
    (FLOAT, "3.5", '{"solution": "...", "short answer": 3.5}', True),  # number, not str: parse_answer raises -> except -> GPT -> "3.500"
    (FLOAT, "3.5", "3.5", True),  # no braces: json.loads("3.5") is a float, .get raises -> parse_answer(pred) -> 3.5
    (FLOAT, "3.5", "The area is 3.5.", True),  # JSON fails, parse_answer("The ...") fails -> GPT -> "3.500"
    (FLOAT, "3.5", "<think>area = 7/2</think><answer>\\boxed{3.5}</answer>", True),  # cut "{3.5}" is no JSON, no float -> GPT -> "3.500"
    (FLOAT, "3.5", "<answer>\\boxed{\\frac{7}{2}}</answer>", True),  # cut "{frac{7}{2}}" fails -> GPT -> "3.500"
    (FLOAT, "3.5", '```json\n{"solution": "area = 7/2", "short answer": "3.5"}\n```', True),  # preprocess cuts the fence off
    (FLOAT, "3.5", "", False),  # nothing to parse; GPT has nothing to rewrite -> parse fails -> float: correct=False
    (FLOAT, "3.5", '{"short answer": null}', False),  # assert short_answer is not None fails -> GPT finds no number -> False
    # --- multiple choice: one char upper-cased, else the only A-E letter, compared with gt ---
    (MC, "B", J("B"), True),  # parse_answer mc: len 1
    (MC, "B", J("b"), True),  # parse_answer mc: len 1 -> upper() "B"
    (MC, "B", J("C"), False),  # parse_answer mc: "C" != "B"
    (MC, "B", J("(B)"), True),  # in_flag over ABCDE of "(B)": only B
    (MC, "B", J("(B) 12"), True),  # in_flag: only B
    (MC, "A", J("Option A"), True),  # in_flag of "OPTION A": only A
    (MC, "C", J("Choice C"), True),  # "CHOICE C" holds C and E -> fails -> GPT -> "C"
    (MC, "B", J("B. 12 cm"), True),  # "B. 12 CM" holds B and C -> fails -> GPT -> "B"
    (MC, "B", "B", True),  # no JSON: parse_answer(pred) len 1
    (MC, "B", "<answer>\\boxed{B}</answer>", True),  # cut "{B}": json fails, parse_answer("{B}") -> only B
    (MC, "B", '<answer>{"solution": "s", "short answer": "B"}</answer>', True),  # cut to the JSON object
    (MC, "B", "The answer is B.", True),  # parse_answer of the sentence: A, B, E -> fails -> GPT -> "B"
    (MC, "D", "Looking at the graph, the function is increasing.\nThe correct option is D.", True),  # many letters -> GPT -> "D"
    (MC, "B", '{"solution": "Let \\"x\\" be the side", "short answer": "B"}', True),  # backslash removal breaks the JSON -> GPT -> "B"
    (MC, "B", '<think>Consider {x}</think>{"solution": "s", "short answer": "B"}', True),  # cut starts at "{x}": JSON fails -> GPT -> "B"
    (MC, "B", "BD", True),  # two letters -> GPT cannot name one ("BD") -> last resort: gt in pred[:3].upper()
    (MC, "B", "", False),  # nothing parsed, "" has no gt in pred[:3]
    # --- text: right when the short answer (lower) is a substring of gt (lower) ---
    (TEXT, "Yes", J("Yes"), True),  # short_answer.lower() in gt.lower()
    (TEXT, "Yes", J("yes"), True),  # case-insensitive
    (TEXT, "Yes", J("y"), True),  # "y" in "yes": a substring counts
    (TEXT, "Yes", J("Yes, it is"), False),  # "yes, it is" not in "yes" (the answer must be inside gt, not gt inside it)
    (TEXT, "(1, 2)", J("(1,2)"), False),  # "(1,2)" not in "(1, 2)"
    (TEXT, "5", J("5.000"), False),  # text answers are strings: "5.000" not in "5"
    (TEXT, "x^2", J("x^2"), True),  # equal
    (TEXT, "No", "No", True),  # no JSON: parse_answer(text) returns the whole response; "no" in "no"
    (TEXT, "No", "I think the answer is No", False),  # no GPT for text: the whole response is not in gt
]


@pytest.mark.parametrize("kind,gt,response,official", CASES)
def test_official_verdict(kind, gt, response, official):
    assert dynamath.score(item(kind, gt), response)["correct"] is official


# Our departures (module docstring): (kind, gt, response, ours, official).
DEPARTURES = [
    (TEXT, "Yes", J(""), False, True),  # departure 3: "" is a substring of every gt in VLMEvalKit; an empty answer never scores here
    (TEXT, "Yes", "<answer>\\boxed{Yes}</answer>", True, False),  # departure 3: VLMEvalKit compares "{yes}" with "yes"; we compare the box
    (FLOAT, "3.5", '<think>x = {1, 2}</think>{"short answer": "3.5"}', True, True),  # departure 2: same verdict, no GPT needed
]


@pytest.mark.parametrize("kind,gt,response,ours,official", DEPARTURES)
def test_departures(kind, gt, response, ours, official):
    assert dynamath.score(item(kind, gt), response)["correct"] is ours


def test_prompt_is_vlmevalkit_build_prompt():
    # Dynamath.build_prompt for the "DynaMath" dataset: "## Question\n {question}" + GUIDE.format(INST) + TEXT_EXAMPLE.
    text = dynamath.prompt(EvalItem(key={"id": "1"}, question="What is the area?", options=[], answer="3.5", meta={"answer_type": "float"}))
    assert text.startswith("## Question\n What is the area?\n## Answer Instruction Please provide an answer to the question outlined above. Your response should adhere to the following JSON format,")
    assert "Format the answer as a three-digit floating-point number and provide it in the 'short answer' key.\n\nExample of expected JSON response format:\n\n{\n    \"solution\"" in text
    mc = dynamath.prompt(EvalItem(key={"id": "1"}, question="Which?", options=[], answer="B", meta={"answer_type": "multiple choice"}))
    assert "such as 'A', 'B', 'C', or 'D'." in mc and mc.endswith('"short answer": "[Concise Answer]"\n}')


def test_average_and_worst_case_by_hand():
    # 3 seeds x 3 variants. Seed 1: all right; seed 2: variant 3 wrong; seed 3: all wrong.
    # Average 5/9; worst case: only seed 1 -> 1/3. By subject (Dynamath.evaluate): PG seeds 1, 2 -> avg 5/6, worst 1/2; AG seed 3 -> 0.
    items, responses = [], []
    for seed, subject, right in (("1", "PG", [1, 1, 1]), ("2", "PG", [1, 1, 0]), ("3", "AG", [0, 0, 0])):
        for v, r in enumerate(right, 1):
            items.append(item(FLOAT, str(1.5 * v), seed=seed, variant=v, subject=subject))
            responses.append(J(str(1.5 * v if r else 99.0)))
    m = dynamath.aggregate(items, [float(dynamath.score(it, r)["correct"]) for it, r in zip(items, responses)])
    assert m["average"] == pytest.approx(5 / 9) and m["worst_case"] == pytest.approx(1 / 3) and m["score"] == m["worst_case"]
    assert m["seeds"] == 3 and m["variants_per_seed"] == 3
    assert m["average/subject/PG"] == pytest.approx(5 / 6) and m["worst_case/subject/PG"] == pytest.approx(1 / 2)
    assert m["average/subject/AG"] == 0.0 and m["worst_case/subject/AG"] == 0.0
    assert m["worst_case/level/high school"] == pytest.approx(1 / 3)


def test_worst_case_on_vlmevalkit_tsv_rows():
    # A VLMEvalKit TSV row is keyed by `index`; its seed is the `qid` column and its variant `varid`.
    items = [EvalItem(key={"index": str(i)}, question="q", options=[], answer="B", meta={"answer_type": MC, "qid": str(i % 2), "varid": str(i // 2 + 1),
                                                                                       "subject": "PG", "knowledge_level": "elementary school"})
             for i in range(4)]  # qid 0: rows 0, 2; qid 1: rows 1, 3
    m = dynamath.aggregate(items, [float(dynamath.score(it, r)["correct"]) for it, r in zip(items, [J("B"), J("B"), J("B"), J("A")])])  # qid 1 fails variant 2
    assert m["seeds"] == 2 and m["average"] == pytest.approx(3 / 4) and m["worst_case"] == pytest.approx(1 / 2)
    assert m["average/level/elementary school"] == pytest.approx(3 / 4)
