"""LogicVista (Yijia-Xiao/LogicVista): loader for `data/dataset.json` + `images/`, and set-of-options
scoring.

Native fields per id: `imagename`, `question`, `answer` (one or several options: "C", "A, C",
or option numbers such as "3"), `reasoning`, `skill` (list: inductive, deductive, numerical,
spatial, mechanical), `capability`. An answer is right when the set of options it names equals
the ground truth's set. Departure, labelled in the results: the official pipeline has GPT
extract the options from the response; ours reads them from the answer rule-based.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from m2r.eval.items import EvalItem
from m2r.rewards.extract import extract_answer

EXTRACTION = "rule-based (the official pipeline uses GPT extraction)"
SKILLS = ("inductive", "deductive", "numerical", "spatial", "mechanical")


def load(root: str | Path, split: str = "dataset") -> list[EvalItem]:
    root = Path(root)
    path = root / f"{split}.json"
    if not path.exists():
        raise FileNotFoundError(f"benchmark.root={root} has no {split}.json; point it at LogicVista's data/ folder (dataset.json and images/)")
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        EvalItem(key={"id": k}, question=r["question"], options=[], answer=str(r["answer"]), images=[root / "images" / r["imagename"]],
                 meta={"skills": list(r.get("skill") or []), "subject": (r.get("skill") or ["all"])[0]})
        for k, r in data.items()
    ]


def prompt(item: EvalItem) -> str:
    return f"{item.question}\nAnswer with the option letter(s) (or number(s)) of the correct choice(s)."


def options_of(text: str | None) -> frozenset[str]:
    """The options a short answer names: standalone capital letters, or option numbers."""
    if not text or len(text) > 60:
        return frozenset()
    letters = re.findall(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])", text)
    return frozenset(letters) if letters else frozenset(re.findall(r"\d+", text))


def score(item: EvalItem, response: str) -> dict[str, Any]:
    ans = extract_answer(response or "")
    pred, gold = options_of(ans), options_of(item.answer)
    return {"extracted": ",".join(sorted(pred)) or None, "correct": bool(pred) and pred == gold}


def aggregate(items: list[EvalItem], scores: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {"overall": sum(scores) / max(1, len(scores))}
    for skill in SKILLS:
        vals = [s for it, s in zip(items, scores) if skill in it.meta["skills"]]
        if vals:
            out[f"skill/{skill}"] = sum(vals) / len(vals)
    return out | {"score": out["overall"], "extraction": EXTRACTION}
