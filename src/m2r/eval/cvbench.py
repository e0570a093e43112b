"""CV-Bench (nyu-visionx/CV-Bench): loader for its parquet (images as bytes) or its repository's
`test.jsonl` + `img/`, the official prompt, the official answer matching and overall score.

Native fields: `idx`, `type` (2D/3D), `task` (Count, Relation, Depth, Distance), `image`
(parquet: `{"bytes", "path"}`) or `filename` (JSONL), `question`, `choices`, `answer` ("(A)"),
`prompt` (question + lettered choices), `source` (ADE20K, COCO, Omni3D).

Prompt and matching follow the authors' scripts in cambrian-mllm/cambrian (commit 539ffc3):
`eval/eval/{ade,coco,omni}/*_eval.py` (prompt = row `prompt` + "\n" + "Answer with the option's
letter from the given choices directly.") and `eval/eval/{ade,coco}/*_test.py` (ADE20K, COCO),
`eval/eval/omni/omni_test.py` (Omni3D), function `extract_mcq_answer` and the match in
`compute_metrics`:

- lower-case and strip the response; for each cue in turn ("answer is", "answer is:", "answer:")
  present, keep only what follows its last occurrence ("The answer is: (B)" leaves ": (b)");
- strip, drop trailing "." (Omni3D: trailing ".", ":" and ","), leading "(" and trailing ")";
- keep the first character only, and compare it with the ground-truth letter ("(B)" -> "b"). So
  any response starting with the right letter is right ("Both" for B, "Behind" for B), and
  "Option B" or "**B**" are wrong;
- Omni3D only: the extracted character may also equal the ground-truth option's text (so only a
  one-character option text can match).

Overall, as the dataset card (nyu-visionx/CV-Bench README) and lmms-eval's
`cv_bench_default_aggregate_results` compute it: ((acc_ADE20K + acc_COCO) / 2 + acc_Omni3D) / 2.
The paper's table reports per-task accuracy (Count, Relation, Depth, Distance) and their mean.

Departures, and what they do to the score:

1. Where the answer is read. Before the official rules, the text after the last `</think>` is
   kept, then the inside of the last `<answer>...</answer>`, then the content of the last balanced
   `\\boxed{}` if there is one. Plain answers ("B", "(B) 2", "The answer is B.") are untouched.
   M2-format responses ("<think>..</think><answer>\\boxed{B}</answer>"), which the official code
   scores by their first character "<" (always wrong), are read as intended: M2 models score
   higher than the official scripts would give them. The other way round, the reasoning is never
   read: "<think>..the answer is B</think><answer></answer>" scores 0 where the official cue
   search would find "b" in the reasoning.
2. lmms-eval's `cv_bench` (EvolvingLMMs-Lab) reads the letter with a regex at the start of the
   response and ignores "answer is"; VLMEvalKit's `CVBench` uses its generic choice matching (with
   an optional GPT judge) and scores 2D as a mean over sources and 3D plainly. We follow the
   authors' scripts; on "The answer is B" lmms-eval would read "T" (wrong), we read "b".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from m2r.eval.items import EvalItem, image_ref, read_rows
from m2r.rewards.extract import last_boxed

TASKS = ("Count", "Relation", "Depth", "Distance")
SOURCES = ("ADE20K", "COCO", "Omni3D")
INSTRUCTION = "Answer with the option's letter from the given choices directly."


def load(root: str | Path, split: str = "test") -> list[EvalItem]:
    root = Path(root)
    items = []
    for r in read_rows(root, split, "CV-Bench"):
        answer = re.sub(r"[()\s]", "", str(r["answer"]))
        items.append(EvalItem(
            key={"idx": r["idx"]}, question=r["question"], options=list(r.get("choices") or []), answer=answer,
            images=[image_ref(r.get("image"), root, r.get("filename"))],
            meta={"task": r["task"], "source": r.get("source"), "type": r.get("type"), "prompt": r.get("prompt"), "subject": r["task"]},
        ))
    return items


def prompt(item: EvalItem) -> str:
    """The row's `prompt` plus the answer instruction, as the official `*_eval.py` scripts build it."""
    base = item.meta.get("prompt")
    if not base:
        opts = "\n".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(item.options))
        base = f"{item.question} Select from the following choices.\n{opts}"
    return base if INSTRUCTION in base else f"{base}\n{INSTRUCTION}"


def answer_text(response: str) -> str:
    """What the official rules read (departure 1): after the last `</think>`, inside the last
    `<answer>`, the last `\\boxed{}` if any; a plain response is read whole."""
    text = response or ""
    text = text.rpartition("</think>")[2] if "</think>" in text else text
    a = text.rfind("<answer>")
    if a != -1:
        text = text[a + len("<answer>"):].partition("</answer>")[0]
    boxed = last_boxed(text)
    return boxed if boxed is not None else text


def official_choice(text: str, source: str | None) -> str:
    """Cambrian's `extract_mcq_answer`: lower-case; keep what follows the last "answer is", then
    "answer is:", then "answer:" (each applied in turn); strip, drop trailing "." (Omni3D: any of
    ".:,"), then leading "(" and trailing ")"; then only the first character counts."""
    text = text.lower().strip()
    for cue in ("answer is", "answer is:", "answer:"):
        if cue in text:
            text = text.rsplit(cue, 1)[1]
    text = text.strip().rstrip(".:," if source == "Omni3D" else ".").lstrip("(").rstrip(")")
    return text[:1]


def score(item: EvalItem, response: str) -> dict[str, Any]:
    source = item.meta.get("source")
    ans = official_choice(answer_text(response), source)
    gt = item.answer.strip().lower()[:1]
    ok = bool(ans) and ans == gt
    if not ok and source == "Omni3D" and ans and gt.isalpha():
        # omni_test.py also accepts the option's text; the answer is one character by now, so
        # only a one-character option (e.g. "2") can match, case-sensitively.
        pos = ord(gt) - ord("a")
        ok = 0 <= pos < len(item.options) and ans == str(item.options[pos])
    return {"extracted": ans or None, "correct": ok}


def aggregate(items: list[EvalItem], scores: list[float]) -> dict[str, Any]:
    def acc(pred) -> float | None:
        vals = [s for it, s in zip(items, scores) if pred(it)]
        return sum(vals) / len(vals) if vals else None

    out: dict[str, Any] = {f"task/{t}": acc(lambda it, t=t: it.meta.get("task") == t) for t in TASKS}
    out |= {f"source/{s}": acc(lambda it, s=s: it.meta.get("source") == s) for s in SOURCES}
    src = [out[f"source/{s}"] for s in SOURCES]
    out["overall"] = (((src[0] + src[1]) / 2 + src[2]) / 2) if None not in src else None
    tasks = [out[f"task/{t}"] for t in TASKS if out[f"task/{t}"] is not None]
    out["task_mean"] = sum(tasks) / len(tasks) if tasks else None
    out["score"] = out["overall"] if out["overall"] is not None else out["task_mean"]
    return out
