"""MathVerse (AI4Math/MathVerse), vision-only version: loader for its parquet/JSON, the CoT query,
and rule-based scoring.

Native fields: `sample_index`, `problem_index`, `problem_version` (Text Dominant, Text Lite,
Vision Intensive, Vision Dominant, Vision Only), `question`, `image` (parquet: `{"bytes", "path"}`;
JSON: a path), `answer`, `question_type` (multi-choice / free-form), `query_cot`, `query_wo`,
`metadata`. The paper reports the Vision Only version, which the loader keeps by default
(`version`).

Scoring: multiple choice by option letter; free form by math-verify (gold first) after
stripping units and `\\text{}`. Departure, labelled in the results: the official pipeline uses GPT
to extract and judge answers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from m2r.data.schema import Sample
from m2r.eval.items import EvalItem, image_ref, read_rows
from m2r.rewards.extract import extract_answer
from m2r.rewards.functions import expression_reward

EXTRACTION = "rule-based with math-verify (the official pipeline uses GPT extraction and judging)"
_UNITS = r"(cm|mm|km|m|units?|degrees?|°|\^\\circ|\^\{\\circ\})"


def load(root: str | Path, split: str = "testmini", version: str = "Vision Only") -> list[EvalItem]:
    root = Path(root)
    items = []
    for r in read_rows(root, split, "MathVerse"):
        if version and r.get("problem_version") != version:
            continue
        items.append(EvalItem(
            key={"sample_index": str(r["sample_index"])}, question=r["question"], options=[], answer=str(r["answer"]).strip(), images=[image_ref(r.get("image"), root)],
            meta={"question_type": r.get("question_type"), "query": r.get("query_cot") or r.get("query_wo"), "subject": (r.get("metadata") or {}).get("subject", "all")},
        ))
    if not items:
        raise ValueError(f"no rows with problem_version={version!r} in {root}; set benchmark.version")
    return items


def prompt(item: EvalItem) -> str:
    return item.meta.get("query") or item.question


def _strip_units(s: str) -> str:
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    return re.sub(rf"\s*{_UNITS}\s*$", "", s.strip()).strip()


def score(item: EvalItem, response: str) -> dict[str, Any]:
    ans = extract_answer(response or "")
    if ans is None:
        return {"extracted": None, "correct": False}
    if item.meta.get("question_type") == "multi-choice":
        m = re.match(r"\s*\(?([A-F])\)?(?:[.:)\s]|$)", ans)
        letter = m.group(1) if m else None
        return {"extracted": letter, "correct": letter is not None and letter == item.answer.strip()[:1]}
    pred, gold = _strip_units(ans), _strip_units(item.answer)
    ok = pred == gold or expression_reward(f"<answer>\\boxed{{{pred}}}</answer>", Sample(id="x", task="mathverse", question="q", answer=gold, answer_type="expression")) == 1.0
    return {"extracted": pred, "correct": bool(ok)}


def aggregate(items: list[EvalItem], scores: list[float]) -> dict[str, Any]:
    overall = sum(scores) / max(1, len(scores))
    return {"overall": overall, "score": overall, "extraction": EXTRACTION}
