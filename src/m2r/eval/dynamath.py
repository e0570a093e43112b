"""DynaMath (DynaMath/DynaMath_Sample): 501 seed questions x 10 generated variants; loader for the
Hugging Face parquet splits `sample_variant1..10`, the official prompt and scoring, and the
average and worst-case accuracies.

Native fields: `id` (the seed question, shared by its variants), `question`, `image` (path) /
`decoded_image` (parquet: `{"bytes", "path"}`), `ground_truth`, `answer_type` (float, multiple
choice, text), `subject`, `knowledge_level`; the variant is the split's number.

Scoring follows `evaluation/*_json_eval.py`: the short answer (the JSON response's
"short answer", else our boxed/fallback extraction) is right when, for floats, |x - gt| <= 0.001
(a trailing pi multiplies by pi); for multiple choice, it is the letter, or the first three
characters contain it; for text, it contains the ground truth. Average accuracy is over all rows;
worst-case accuracy counts a seed question only when all its variants are right.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from m2r.eval.items import EvalItem
from m2r.rewards.extract import extract_answer

GUIDE = (
    "\n## Answer Instruction Please provide an answer to the question outlined above. Your response should adhere \n"
    "to the following JSON format, which includes two keys: 'solution' and 'short answer'. The 'solution' key can contain \n"
    "detailed steps needed to solve the question, and the 'short answer' key should provide a concise response. If the problem is a "
    "multiple choice problem, just provide the corresponing choice option, \nsuch as 'A', 'B', 'C', or 'D'. If the answer is a numerical "
    "value, format it as a three-digit floating-point number.\n\nExample of expected JSON response format:\n\n"
)
EXAMPLE = json.dumps({"solution": "[Detailed step-by-step explanation]", "short answer": "[Concise Answer]"}, indent=4)


def load(root: str | Path, split: str = "sample") -> list[EvalItem]:
    root = Path(root)
    files = sorted(root.glob(f"**/{split}_variant*.parquet"))
    if not files:
        raise FileNotFoundError(f"benchmark.root={root} has no {split}_variant*.parquet files; point it at the DynaMath_Sample folder")
    import pyarrow.parquet as pq

    items = []
    for f in files:
        variant = int(re.search(r"variant(\d+)", f.name).group(1))
        for r in pq.read_table(f).to_pylist():
            img = r.get("decoded_image")
            ref = img["bytes"] if isinstance(img, dict) and img.get("bytes") else root / r["image"]
            items.append(EvalItem(
                key={"id": str(r["id"]), "variant": variant}, question=r["question"], options=[], answer=str(r["ground_truth"]).strip(), images=[ref],
                meta={"answer_type": r["answer_type"], "subject": r.get("subject"), "level": r.get("knowledge_level")},
            ))
    return items


def prompt(item: EvalItem) -> str:
    text = "## Question\n" + item.question
    if item.meta.get("answer_type") == "float":
        text += "Please answer in a floating-point number."
    return text + GUIDE + EXAMPLE


def short_answer(response: str) -> str | None:
    """The JSON response's "short answer", else the boxed / fallback extraction."""
    text = response or ""
    a, b = text.find("{"), text.rfind("}")
    if 0 <= a < b:
        try:
            obj = json.loads(text[a : b + 1].replace("\\", ""), strict=False)
            if isinstance(obj, dict) and "short answer" in obj:
                return str(obj["short answer"])
        except (json.JSONDecodeError, ValueError):
            pass
    return extract_answer(text)


def _float(s: str) -> float | None:
    s = s.strip().split(" ")[0]
    try:
        if "π" in s:
            head = s.split("π")[0]
            return (float(head) if head not in ("", "+", "-") else float(head + "1")) * math.pi
        return float(s)
    except ValueError:
        return None


def score(item: EvalItem, response: str) -> dict[str, Any]:
    ans = short_answer(response)
    gt, kind = item.answer, item.meta.get("answer_type")
    ok = False
    if ans is not None and ans.strip():
        if kind == "float":
            x, g = _float(ans), _float(gt)
            ok = x is not None and g is not None and abs(x - g) <= 0.001
        elif kind == "multiple choice":
            ans = ans.strip()
            ok = ans == gt if len(ans) == 1 else gt in ans[:3]
        else:
            ok = gt in ans
    return {"extracted": ans, "correct": bool(ok)}


def aggregate(items: list[EvalItem], scores: list[float]) -> dict[str, Any]:
    seeds: dict[str, list[float]] = defaultdict(list)
    for it, s in zip(items, scores):
        seeds[str(it.key.get("id", it.meta.get("id", it.key.get("index"))))].append(s)  # TSV rows carry the seed id as a column
    average = sum(scores) / max(1, len(scores))
    worst = sum(all(v == 1.0 for v in vs) for vs in seeds.values()) / max(1, len(seeds))
    return {"average": average, "worst_case": worst, "seeds": len(seeds), "variants_per_seed": max(len(v) for v in seeds.values()) if seeds else 0, "score": worst}
