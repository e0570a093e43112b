"""We-Math: loader for its own `testmini.json` + images, per-row letter scoring, and the official
four-dimensional metrics (github.com/We-Math/We-Math, `evaluation/four_dimensional_metrics.py`).

Rows are sub-questions of multi-step problems: `ID` names the problem, `key` the row's role
(`2steps_1`, `2steps_2`, `2steps_multi`, `3steps_1..3`, `3steps_multi`). A problem is
- CM (complete mastery): composite right and, strict, every one-step right / loose, any one-step right;
- RM (rote memorisation): composite right and, strict, some one-step wrong / loose, all one-steps wrong;
- IG (inadequate generalisation): every one-step right, composite wrong;
- IK (insufficient knowledge): some one-step wrong, composite wrong.
Score(strict) = (CM_strict + 0.5 IG) / N and Score(loose) = (CM_loose + 0.5 IG) / N with N = 525
for testmini (the official code writes it as (N - 0.5 IG - RM - IK) / N, the same number). The RM
rates are RM / (CM + RM), as in the official code.

Answer extraction: the official code takes the first character after the last "Answer" when it
is a letter A-H; with the M2 prompt the answer is the last `\\boxed{}` letter (`extract`).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from m2r.eval.items import EvalItem
from m2r.rewards.extract import extract_answer

OFFICIAL_PROMPT = "Now, we require you to solve a multiple-choice math question. Please briefly describe your thought process and provide the final answer(option).\nQuestion: {question}\nOption: {option}\nRegarding the format, please answer following the template below, and be sure to include two <> symbols:\n<Thought process>: <<your thought process>> <Answer>: <<your option>>"


def load(root: str | Path, split: str = "testmini") -> list[EvalItem]:
    root = Path(root)
    path = root / f"{split}.json"
    if not path.exists():
        raise FileNotFoundError(f"benchmark.root={root} has no {split}.json; point it at the We-Math data folder (with 2steps/ and 3steps/)")
    rows = json.loads(path.read_text(encoding="utf-8"))
    items = []
    for r in rows:
        options = [o.strip() for o in re.split(r";\s*(?=[A-H]\.)", r["option"])] if r.get("option") else []
        items.append(EvalItem(
            key={"ID": r["ID"], "key": r["key"]}, question=r["question"], options=options, answer=str(r["answer"]).strip(),
            images=[root / r["image_path"]], meta={"option_text": r.get("option", ""), "concept": r.get("knowledge concept")},
        ))
    return items


def prompt(item: EvalItem) -> str:
    return OFFICIAL_PROMPT.format(question=item.question, option=item.meta.get("option_text", "; ".join(item.options)))


def extract(response: str) -> str | None:
    """A letter A-H: the official "<Answer>: <<X>>" reading first, else the M2 boxed answer."""
    text = response or ""
    if "Answer" in text:
        tail = re.sub(r"[><:.]", "", text.split("Answer")[-1]).strip()
        if tail and tail[0] in "ABCDEFGH":
            return tail[0]
    ans = extract_answer(text)
    if ans:
        m = re.fullmatch(r"\(?([A-H])\)?(?:[.:)]\s*.*)?", ans.strip(), re.S)
        if m:
            return m.group(1)
    return None


def score(item: EvalItem, response: str) -> dict[str, Any]:
    ans = extract(response)
    return {"extracted": ans, "correct": ans is not None and ans == item.answer}


def four_dimensional(rows: list[tuple[str, str, bool]], n_problems: int | None = None) -> dict[str, float]:
    """The official metrics from (ID, key, correct) rows. Counts and rates (as fractions)."""
    by_problem: dict[str, dict[str, bool]] = defaultdict(dict)
    for pid, key, correct in rows:
        by_problem[pid][key] = bool(correct)
    c = dict.fromkeys(["IK", "IG", "CM_strict", "CM_loose", "RM_strict", "RM_loose"], 0)
    for parts in by_problem.values():
        multi = next((v for k, v in parts.items() if k.endswith("_multi")), None)
        steps = [v for k, v in parts.items() if not k.endswith("_multi")]
        if multi is None or not steps:
            raise ValueError(f"We-Math problem with rows {sorted(parts)} lacks its composite or one-step rows; score the whole file")
        all_ok, any_ok = all(steps), any(steps)
        if multi:
            c["CM_strict"] += all_ok
            c["RM_strict"] += not all_ok
            c["CM_loose"] += any_ok
            c["RM_loose"] += not any_ok
        else:
            c["IG"] += all_ok
            c["IK"] += not all_ok
    n = n_problems or len(by_problem)
    out = {f"{k}_count": float(v) for k, v in c.items()}
    out |= {"IK": c["IK"] / n, "IG": c["IG"] / n, "CM_strict": c["CM_strict"] / n, "CM_loose": c["CM_loose"] / n}
    out["RM_strict"] = c["RM_strict"] / max(1, c["CM_strict"] + c["RM_strict"])
    out["RM_loose"] = c["RM_loose"] / max(1, c["CM_loose"] + c["RM_loose"])
    out["score_strict"] = (c["CM_strict"] + 0.5 * c["IG"]) / n
    out["score_loose"] = (c["CM_loose"] + 0.5 * c["IG"]) / n
    out["n_problems"] = float(n)
    return out


def aggregate(items: list[EvalItem], scores: list[float]) -> dict[str, Any]:
    ids = [(it.key.get("ID", it.meta.get("ID")), it.key.get("key", it.meta.get("key"))) for it in items]  # TSV rows: columns in meta
    fd = four_dimensional([(pid, key, bool(s)) for (pid, key), s in zip(ids, scores)])
    return {"accuracy": sum(scores) / max(1, len(scores)), "four_dimensional": fd, "score": fd["score_strict"]}
