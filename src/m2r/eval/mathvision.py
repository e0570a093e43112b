"""MATH-Vision (MATH-V): loader for its own JSONL + images, and its official scoring rules.

Native format (github.com/mathllm/MATH-V, `data/test.jsonl` / `testmini.jsonl`): one object per
problem with `id`, `question` (with `<image1>` placeholders), `options` (list, empty for free
form), `answer` (a letter A-E for multiple choice), `image` (a path relative to the data root),
`level`, `subject`. The Hugging Face parquet release carries the same fields with the image as
bytes (`decoded_image`).

Scoring follows the official `evaluation/evaluate.py` + `utils.py`: the answer is the last
`\\boxed{}` (else the text after "the answer is"), normalised as MATH answers are (spaces,
`\\left`/`\\right`, degrees, `\\text`, units km/m^3, `=`/`\\approx` keep the right-hand side,
`a/b` -> `\\frac{a}{b}`); it is correct when it equals the ground truth, or the ground truth's
option text, as strings after lower-casing, or as values rounded to 2 decimals. Departure: the
official code evaluates values with `latex2sympy`; we parse with math-verify (same sympy) in its
guarded worker, so a pathological answer cannot hang the run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from m2r.eval.items import EvalItem, image_ref, read_rows
from m2r.rewards.extract import last_boxed

OFFICIAL_PROMPT = (
    "Please solve the problem step by step and put your answer in one \"\\boxed{{}}\". "
    "If it is a multiple choice question, only one letter is allowed in the \"\\boxed{{}}\".\n{question}\n{options}"
)


def load(root: str | Path, split: str = "testmini") -> list[EvalItem]:
    """MATH-V rows from `<root>/<split>.jsonl` (images relative to root) or the HF parquet files."""
    root = Path(root)
    return [
        EvalItem(
            key={"id": str(r["id"])}, question=r["question"], options=list(r.get("options") or []), answer=str(r["answer"]),
            images=[image_ref(r.get("decoded_image") or r.get("image"), root, r.get("image") if isinstance(r.get("image"), str) else None)],
            meta={"subject": r.get("subject"), "level": r.get("level")},
        )
        for r in read_rows(root, split, "MATH-V")
    ]


def prompt(item: EvalItem) -> str:
    """The official MATH-V prompt (options lettered A-E when present)."""
    q = re.sub(r"<image\d+>", "", item.question).strip()
    opts = "\n".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(item.options))
    return OFFICIAL_PROMPT.format(question=q, options=opts).strip()


def _strip(s: str) -> str:
    """MATH-style answer normalisation (after the official `find_math_answer` / `_strip_string`)."""
    s = s.lower().replace("{}", "")
    k = s.find("}")
    if k != -1 and (s.find("{") == -1 or k < s.find("{")):
        s = s[:k]
    s = s.split("=")[-1].split("\\approx")[-1]
    for a, b in [(" ", ""), ("\\,", ""), ("∞", "\\infty"), ("+\\infty", "\\infty"), ("\\\\", "\\"), ("\n", ""), ("\\text", ""), ("\\mbox", ""),
                 ("bmatrix", "pmatrix"), ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("{m}^3", ""), ("m^3", ""),
                 ("{units}", ""), ("units", ""), ("{km}", ""), ("km", ""), ("\\!", ""), ("tfrac", "frac"), ("dfrac", "frac"), ("\\$", ""), ("$", ""),
                 ("\\%", ""), ("%", "")]:
        s = s.replace(a, b)
    s = s.split("\\text{ ")[0]
    if s.startswith("."):
        s = "0" + s
    m = re.fullmatch(r"(-?\d+)/(\d+)", s)
    if m:
        s = f"\\frac{{{m.group(1)}}}{{{m.group(2)}}}"
    if s == "0.5":
        s = "\\frac{1}{2}"
    for c in "abcde":
        s = s.replace(f"({c})", c).replace(f"{{{c}}}", c)
    return s.rstrip(".").lstrip(":").strip()


def extract(response: str) -> str:
    """The model's answer as the official evaluation reads it, normalised."""
    text = (response or "")[-20_000:]
    k = text.rfind("</think>")
    if k != -1:
        text = text[k + len("</think>") :]
    boxed = last_boxed(text)
    if boxed is None:
        t = text.strip()
        for c in "ABCDE":
            if t.endswith(f" {c}.") or t.endswith(f" ({c}).") or t.startswith(f"{c}\n") or t.startswith(f"({c})\n"):
                return c.lower()
        for flag in ("the final answer is", "the answer is", "the correct answer is", "the answer should be"):
            low = t.lower()
            if flag in low:
                t = t[low.rfind(flag) + len(flag) :].strip().split("\n")[0].split(". ")[0]
                break
        boxed = t
    return _strip(boxed)


def _value(s: str) -> float | None:
    from m2r.rewards.functions import _too_costly

    if not s or _too_costly(s):
        return None
    try:
        return float(s)
    except ValueError:
        pass
    from m2r.rewards.extract import parse_number

    x = parse_number(s)
    return x


def is_equal(answer: str, gold: str) -> bool:
    """Official `is_equal`: equal strings (lower-case), or equal values rounded to 2 decimals."""
    a, g = answer.lower(), gold.lower()
    if not a.replace(" ", "") or not g.replace(" ", ""):
        return False
    if a.strip() == g.strip():
        return True
    va, vg = _value(a), _value(_strip(g))
    return va is not None and vg is not None and round(va, 2) == round(vg, 2)


def score(item: EvalItem, response: str) -> dict[str, Any]:
    """{"extracted", "correct"} for one response."""
    ans = extract(response)
    gold_text = item.options[ord(item.answer) - 65] if item.options and len(item.answer) == 1 and "A" <= item.answer <= "E" else ""
    correct = is_equal(ans, item.answer) or (bool(gold_text) and is_equal(ans, _strip(gold_text)))
    return {"extracted": ans, "correct": bool(correct)}


def aggregate(items: list[EvalItem], scores: list[float]) -> dict[str, Any]:
    """Accuracy overall and per subject (the official per-subject breakdown)."""
    from m2r.eval.metrics import GroupAccuracy

    acc = GroupAccuracy(sorted({str(it.meta.get("subject")) for it in items}))
    for it, s in zip(items, scores):
        acc.update(str(it.meta.get("subject")), s)
    out = acc.compute()
    return {"accuracy": out, "score": out["overall"]}
