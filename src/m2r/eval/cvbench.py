"""CV-Bench (nyu-visionx/CV-Bench): loader for its parquet (images as bytes) or its repository's
`test.jsonl` + `img/`, official prompt, letter scoring, and the official overall score.

Native fields: `idx`, `type` (2D/3D), `task` (Count, Relation, Depth, Distance), `image`
(parquet: `{"bytes", "path"}`) or `filename` (JSONL), `question`, `choices`, `answer` ("(A)"),
`prompt` (question + lettered choices + the answer instruction), `source` (ADE20K, COCO, Omni3D).

Overall, as the benchmark's README computes it: ((acc_ADE20K + acc_COCO) / 2 + acc_Omni3D) / 2.
The paper's table reports per-task accuracy (Count, Relation, Depth, Distance) and their mean.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from m2r.eval.items import EvalItem, image_ref, read_rows
from m2r.rewards.extract import extract_answer

TASKS = ("Count", "Relation", "Depth", "Distance")
SOURCES = ("ADE20K", "COCO", "Omni3D")


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
    if item.meta.get("prompt"):
        return item.meta["prompt"]
    opts = " ".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(item.options))
    return f"{item.question} Select from the following choices.\n{opts}\nAnswer with the option's letter from the given choices directly."


def extract(response: str) -> str | None:
    """The option letter: a boxed or tagged answer first, else a leading "(B)" / "B" / "B." ."""
    ans = extract_answer(response or "")
    for text in (ans, (response or "").strip()[:50]):
        if text:
            m = re.match(r"\s*\(?([A-F])\)?(?:[.:)\s]|$)", text)
            if m:
                return m.group(1)
    return None


def score(item: EvalItem, response: str) -> dict[str, Any]:
    ans = extract(response)
    return {"extracted": ans, "correct": ans is not None and ans == item.answer}


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
