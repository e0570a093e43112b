"""The embedded held-out benchmark: the `val` split of the run's own shards (`benchmark=embedded`).

Scored by answer type, with the accuracy functions and the strict extraction the RL rewards use
(one well-formed answer: closed `<think>`, one `<answer>`, one `\\boxed{}`): multiple choice by
option letter or option text (`choice_reward`), numbers by exact match (`number_reward`),
expressions by math-verify (`expression_reward`), text by exact match after case and whitespace
normalisation (`text_reward`). One departure from the reward routing: numeric spatial answers
(distances, sizes, areas, counts) get VSI-Bench's mean relative accuracy, so a model trained with
EDNM is not graded by EDNM. Imported data (`data=jsonl`) is scored the same way by its own
`answer_type`. Reports per-task accuracy, the spatial and general means, the mean over tasks and
the accuracy per answer type (`type/<answer_type>`), and per task the score of the best constant answer
(`blind/<task>`, `blind_baseline`): the bar a model must clear to have read anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from m2r.data.schema import Sample, format_question
from m2r.data.shards import sample_stream, shard_urls
from m2r.eval.items import EvalItem
from m2r.eval.vsibench import mra
from m2r.rewards.extract import answer_content, strict_number
from m2r.rewards.functions import ACCURACY_BY_TYPE as ACCURACY


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


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def score(item: EvalItem, response: str) -> dict[str, Any]:
    sample = Sample.from_dict(item.meta["sample"])
    text = response or ""
    if sample.task.startswith("spatial/") and sample.answer_type == "number":
        x = strict_number(answer_content(text))
        gold = _number(sample.answer)  # "1,200" as the schema allows
        if gold is None:
            raise ValueError(f"sample {sample.id}: numeric answer {sample.answer!r} is not a number")
        s = mra(x, gold) if x is not None else 0.0
        return {"extracted": x, "correct": s == 1.0, "score": s}
    if sample.answer_type not in ACCURACY:
        raise ValueError(f"sample {sample.id}: answer_type {sample.answer_type!r} is not one of {sorted(ACCURACY)}")
    return {"extracted": answer_content(text), "correct": ACCURACY[sample.answer_type](text, sample) == 1.0}


def blind_baseline(items: list[EvalItem]) -> dict[str, float]:
    """Per task, what a model that knows only the task and the row's answer type could score: one constant answer per type.

    Choice rows get the letter that is most often right, numeric spatial rows the one value among the task's gold
    answers with the best total mean relative accuracy, and other rows their most common gold answer. The constants
    are picked on these very rows, which favours the baseline; still, it is not an exact bound on every constant
    policy (a value between gold answers can earn more partial MRA credit, an option's text can match more rows
    than a letter). A model that does not beat it on a task has learnt nothing visible there; beating it is
    necessary, not sufficient (the question's wording can be enough). Returns {task: score in [0, 1]}."""
    rows: dict[str, dict[str, list[str]]] = {}
    for it in items:
        s = it.meta["sample"]
        numeric_spatial = s["task"].startswith("spatial/") and s["answer_type"] == "number"
        rows.setdefault(s["task"], {}).setdefault("mra" if numeric_spatial else s["answer_type"], []).append(str(s["answer"]))
    out = {}
    for task, kinds in rows.items():
        total = sum(len(v) for v in kinds.values())
        best = 0.0
        for kind, golds in kinds.items():
            if kind == "mra":
                values = [v for v in (_number(g) for g in golds) if v is not None]  # a gold that does not parse scores 0 anyway
                best += max((sum(mra(c, g) for g in values) for c in set(values)), default=0.0)
            else:
                best += max(golds.count(g) for g in set(golds))
        out[task] = best / total
    return out


def aggregate(items: list[EvalItem], scores: list[float]) -> dict[str, Any]:
    by_task: dict[str, list[float]] = {}
    by_type: dict[str, list[float]] = {}
    for it, s in zip(items, scores):
        by_task.setdefault(it.meta["task"], []).append(s)
        by_type.setdefault(it.meta["sample"]["answer_type"], []).append(s)
    out: dict[str, Any] = {f"task/{t}": sum(v) / len(v) for t, v in sorted(by_task.items())}
    for family, prefix in (("spatial", "spatial/"), ("general", "general/"), ("video", "spatial/video/")):  # video: the camera-walk tasks, also in spatial
        vals = [v for k, v in out.items() if k.startswith(f"task/{prefix}")]
        out[family] = sum(vals) / len(vals) if vals else None
    tasks = [v for k, v in out.items() if k.startswith("task/")]
    out["overall"] = sum(tasks) / len(tasks)
    out["score"] = out["overall"]
    out.update({f"type/{t}": sum(v) / len(v) for t, v in sorted(by_type.items())})
    out.update({f"blind/{t}": v for t, v in sorted(blind_baseline(items).items())})  # the best constant answer per task
    return out
