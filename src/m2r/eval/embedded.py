"""The embedded held-out benchmark: the `val` split of the run's own shards (`benchmark=embedded`).

Scored as a benchmark, not with the training reward: multiple choice by option letter (or option
text), general numeric answers by exact match, numeric spatial answers (distances, sizes, areas,
counts) by VSI-Bench's mean relative accuracy, so a model trained with EDNM is not graded by
EDNM. Per-task accuracy, the spatial and general means, and the mean over tasks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from m2r.data.schema import Sample, format_question
from m2r.data.shards import sample_stream, shard_urls
from m2r.eval.items import EvalItem
from m2r.eval.vsibench import mra
from m2r.rewards.extract import extract_answer, parse_number
from m2r.rewards.functions import choice_reward, number_reward


def load(root: str | Path, split: str = "val") -> list[EvalItem]:
    items = []
    for sample, imgs in sample_stream(shard_urls(root, split), shuffle_shards=False):
        items.append(EvalItem(
            key={"id": sample.id}, question=format_question(sample), options=[], answer=sample.answer,  # options are in the question text
            images=list(imgs), meta={"task": sample.task, "subject": sample.task, "sample": sample.to_dict()},
        ))
    if not items:
        raise ValueError(f"{root}/{split} holds no samples")
    return items


def prompt(item: EvalItem) -> str:
    return item.question  # already in the M2 layout (question, then lettered options)


def score(item: EvalItem, response: str) -> dict[str, Any]:
    sample = Sample.from_dict(item.meta["sample"])
    text = response or ""
    if sample.answer_type == "choice":
        return {"extracted": extract_answer(text), "correct": choice_reward(text, sample) == 1.0}
    if sample.task.startswith("spatial/") and sample.answer_type == "number":
        x = parse_number(extract_answer(text))
        s = mra(x, float(sample.answer)) if x is not None else 0.0
        return {"extracted": x, "correct": s == 1.0, "score": s}
    return {"extracted": extract_answer(text), "correct": number_reward(text, sample) == 1.0}


def aggregate(items: list[EvalItem], scores: list[float]) -> dict[str, Any]:
    by_task: dict[str, list[float]] = {}
    for it, s in zip(items, scores):
        by_task.setdefault(it.meta["task"], []).append(s)
    out: dict[str, Any] = {f"task/{t}": sum(v) / len(v) for t, v in sorted(by_task.items())}
    for family in ("spatial", "general"):
        vals = [v for k, v in out.items() if k.startswith(f"task/{family}/")]
        out[family] = sum(vals) / len(vals) if vals else None
    tasks = [v for k, v in out.items() if k.startswith("task/")]
    out["overall"] = sum(tasks) / len(tasks)
    out["score"] = out["overall"]
    return out
