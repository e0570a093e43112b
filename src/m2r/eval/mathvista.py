"""MathVista (AI4Math/MathVista): loader for its parquet (images as bytes) or its repository's
`testmini.json` + `images/`, the official query, and the official answer normalisation.

Native fields: `pid`, `question`, `image` (a path), `decoded_image` (parquet: `{"bytes", "path"}`),
`choices` (list or null), `unit`, `precision`, `answer`, `question_type` (multi_choice /
free_form), `answer_type` (text / integer / float / list), `query` (the official zero-shot
prompt), `metadata` (category, task, skills, ...).

Scoring follows `evaluation/calculate_score.py`: the extraction is normalised by question and
answer type (a choice letter maps to its option text, else the most similar option by edit
distance; integers as int(float(x)); floats rounded to the problem's `precision`; lists as
strings) and compared with the answer as strings. Departure, labelled in the results: the official
extraction asks GPT-4 to pull the answer out of the response; ours is rule-based (the last
`\\boxed{}`, else "the answer is ...", else the last number / the whole short answer).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from m2r.eval.items import EvalItem, image_ref, read_rows
from m2r.rewards.extract import extract_answer

EXTRACTION = "rule-based (the official scorer uses GPT-4 extraction)"


def load(root: str | Path, split: str = "testmini") -> list[EvalItem]:
    root = Path(root)
    items = []
    for r in read_rows(root, split, "MathVista"):
        meta = dict(r.get("metadata") or {})
        meta |= {k: r.get(k) for k in ("question_type", "answer_type", "precision", "unit", "query")}
        meta["subject"] = meta.get("task") or "all"
        ref = image_ref(r.get("decoded_image"), root, r.get("image"))
        items.append(EvalItem(key={"pid": str(r["pid"])}, question=r["question"], options=list(r.get("choices") or []), answer=str(r["answer"]), images=[ref], meta=meta))
    return items


def prompt(item: EvalItem) -> str:
    if item.meta.get("query"):
        return item.meta["query"]
    q = f"Question: {item.question}" + (f" (Unit: {item.meta['unit']})" if item.meta.get("unit") else "")
    if item.options:
        q += "\nChoices:\n" + "\n".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(item.options))
    return q


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def normalize(extraction: str | None, item: EvalItem) -> str | None:
    """The official `normalize_extracted_answer`."""
    qt, at, precision = item.meta.get("question_type"), item.meta.get("answer_type"), item.meta.get("precision")
    if qt == "multi_choice":
        ext = (extraction or "").strip()[:1000]
        letter = re.findall(r"\(([a-zA-Z])\)", ext)
        if letter:
            ext = letter[0].upper()
        letters = [chr(65 + i) for i in range(len(item.options))]
        if ext in letters:
            return item.options[letters.index(ext)]
        return min(item.options, key=lambda c: edit_distance(ext[:200], c)) if item.options else None
    if extraction is None:
        return None
    try:
        if at == "integer":
            return str(int(float(extraction)))
        if at == "float":
            return str(round(float(extraction), int(precision or 0)))
    except (ValueError, OverflowError):
        return None
    return str(extraction)


def score(item: EvalItem, response: str) -> dict[str, Any]:
    ext = extract_answer(response or "")
    if ext is not None and item.meta.get("answer_type") in ("integer", "float"):
        ext = ext.replace(",", "").strip().rstrip(".")
        num = re.findall(r"-?\d+(?:\.\d+)?", ext)
        ext = num[-1] if num and not re.fullmatch(r"-?\d+(?:\.\d+)?", ext) else ext
    pred = normalize(ext, item)
    return {"extracted": pred, "correct": pred is not None and pred == item.answer}


def aggregate(items: list[EvalItem], scores: list[float]) -> dict[str, Any]:
    from m2r.eval.metrics import GroupAccuracy

    acc = GroupAccuracy(sorted({str(it.meta.get("subject")) for it in items}))
    for it, s in zip(items, scores):
        acc.update(str(it.meta.get("subject")), s)
    out = acc.compute()
    return {"accuracy": out, "score": out["overall"], "extraction": EXTRACTION}
