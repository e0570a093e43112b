"""MathVerse (AI4Math/MathVerse), vision-only version by default: loader for its parquet/JSON, the
CoT query, and rule-based scoring in place of the official GPT extraction and GPT judge.

Native fields: `sample_index`, `problem_index`, `problem_version` (Text Dominant, Text Lite,
Vision Intensive, Vision Dominant, Vision Only), `question` (empty in Vision Only: the question is
in the image), `image` (parquet: `{"bytes", "path"}`; JSON: a path), `answer`, `question_type`
(multi-choice / free-form), `query_cot`, `query_wo`, `question_for_eval` (the full question with
its choices, for the judge), `metadata` (`subject`, `subfield`). The paper reports the Vision Only
version, which the loader keeps by default (`version`).

Official scoring: MathVerse `evaluation/extract_answer_s1.py`, `evaluation/score_answer_s2.py`,
`evaluation/prompts.py` (ZrrSkywalker/MathVerse@937b090), the same two steps as VLMEvalKit
`vlmeval/dataset/utils/mathverse.py` (`MathVerse_auxeval_extract`, `post_check_score`,
`MathVerse_auxeval_score`, `MathVerse_acc`; open-compass/VLMEvalKit@e8e78f0):

1. GPT extracts the answer from the response (`demo_prompt_extract`: the final value, option
   letter, interval, equation or coordinates; `null` when the response gives none).
2. The extraction is right when it equals the gold after stripping (`post_check_score`; the
   repo's `--quick_match`); otherwise GPT judges whether the two are consistent
   (`demo_prompt_score`): multiple choice only on a complete match with the gold option (its
   letter, or its text: the repo's fifth example); another letter (`B:2√3` for C), a partial
   answer (the range alone for "domain and range"), `null` are wrong; free form when the meaning
   is the same ("0.5m and 50cm"), an interval with another bracket being different.
3. Accuracy per problem version, subject and subfield (`MathVerse_acc`).

Here, in place of GPT:

- extraction: text after the last `</think>`, inside the last `<answer>`; the last `\\boxed{}`;
  else the last "answer is X" / "Answer: X"; for multiple choice "option/choice X"; else the last
  line when it is a short formula or letter; else (free form) the last number.
- judgement: equal after stripping; multiple choice by the leading option letter ("C", "(C)",
  "C: √3") or, without a letter, by equality with exactly one option's text (the options are read
  from `question_for_eval`); free form by equality after normalising LaTeX and Unicode (`√`, `π`,
  `°`, `\\text{}`, `$`), dropping units and degrees, metric length/area/volume conversion
  ("0.5 m" = "50 cm"), percent ("50%" = "0.5"), the left side of `x = 5` against `5` and of
  `f(x) = ...` against `y = ...`, then math-verify equivalence (gold first; intervals keep their
  brackets).

Departures, and what they do to the score:

1. GPT extraction replaced by rules: a response whose answer GPT would find but these rules do
   not (an answer stated in words mid-sentence, not boxed, not after "answer is", not on the last
   line) is scored wrong, or scored on the last number it holds.
2. GPT judge replaced by rules: answers a GPT judge accepts as "the same meaning" outside the
   normalisations above are wrong here, notably rounded decimals for an exact gold (`3.46` for
   `2\\sqrt{3}`; math-verify accepts only agreement to about 6 digits), non-metric unit
   conversions, angles in radians for a gold in degrees, and wording ("two" for `2`); a GPT
   judge's own errors are not imitated.
3. `score` is the Vision Only accuracy when the items hold several versions (a full testmini
   TSV), else the accuracy over all items; `overall` is always over all items.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from m2r.eval.items import EvalItem, image_ref, read_rows
from m2r.rewards.extract import answer_span, last_boxed

EXTRACTION = "rules in place of the official GPT extraction and GPT judge"
VISION_ONLY = "Vision Only"

_ANSWER_CUE = re.compile(r"(?i:final\s+answer|answer)\s*(?:(?i:is|should\s+be|would\s+be)\s*:?|[:：=])\s*([^\n]+)")
_OPTION_CUE = re.compile(r"(?i:option|choice)\s*(?:(?i:is)\s*:?|[:：])?\s*\*{0,2}\(?([A-F])\)?(?![A-Za-z0-9])")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")
_LETTER = re.compile(r"\(?([A-F])\)?(?:\s*[.:：)、]\s*(.*)|\s*)", re.S)
_PAREN_LETTER = re.compile(r"\(([A-F])\)(.*)", re.S)
_OPTION_LINE = re.compile(r"^\s*\(?([A-F])\)?\s*[:.：)]\s*(.+?)\s*$", re.M)
_OPTION_INLINE = re.compile(r"(?<![A-Za-z0-9])([A-F])\s*[.:：]\s+")
_LENGTH = {"mm": 1e-3, "cm": 1e-2, "dm": 1e-1, "m": 1.0, "km": 1e3}
_UNIT_WORDS = (r"(?:square\s+|sq\.?\s*|cubic\s+)?(?:units?|cm|mm|dm|km|m|meters?|metres?|centimeters?|centimetres?|millimeters?|kilometers?|inches|inch|in|"
               r"feet|foot|ft|yards?|yd|miles?|mi|kg|g|grams?|kilograms?|seconds?|sec|s|minutes?|min|hours?|hrs?|h|km/h|m/s|mph|degrees?|deg|rad|radians?|"
               r"cm\^?\{?[23]\}?|mm\^?\{?[23]\}?|m\^?\{?[23]\}?|km\^?\{?[23]\}?|ft\^?\{?[23]\}?|in\^?\{?[23]\}?|cm²|cm³|m²|m³|mm²|mm³)")
_TRAILING_UNIT = re.compile(rf"(?<=[\d}}).])\s*{_UNIT_WORDS}\s*$")
_COSTLY = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\d+\s*\^|\d{4,}\s*!|\^\s*\{?\s*[-+]?\s*\d{4,}")  # towers, big factorials and exponents
_FUNCTION_LHS = re.compile(r"^\s*(?:[a-zA-Z](?:_\{?\w+\}?)?(?:\s*\(\s*[a-z]\s*\))?)\s*$")


def load(root: str | Path, split: str = "testmini", version: str = VISION_ONLY) -> list[EvalItem]:
    root = Path(root)
    items = []
    for r in read_rows(root, split, "MathVerse"):
        if version and r.get("problem_version") != version:
            continue
        meta = r.get("metadata") or {}
        items.append(EvalItem(
            # Vision Only rows have an empty `question` (it is in the image): the M2 prompt gets the instruction instead.
            key={"sample_index": str(r["sample_index"])}, question=r.get("question") or r.get("query_wo") or "", options=[],
            answer=str(r["answer"]).strip(), images=[image_ref(r.get("image"), root)],
            meta={"question_type": r.get("question_type"), "query": r.get("query_cot") or r.get("query_wo"), "problem_version": r.get("problem_version"),
                  "question_for_eval": r.get("question_for_eval") or r.get("question") or "",
                  "subject": meta.get("subject", "all"), "subfield": meta.get("subfield", "all")},
        ))
    if not items:
        raise ValueError(f"no rows with problem_version={version!r} in {root}; set benchmark.version")
    return items


def prompt(item: EvalItem) -> str:
    """The row's CoT query (`query_cot`), as VLMEvalKit's `MathVerse_MINI_Vision_Only_cot` asks it."""
    return item.meta.get("query") or item.meta.get("query_cot") or item.meta.get("query_wo") or item.question


# ---------------------------------------------------------------------------------------------
# Extraction (in place of GPT's `demo_prompt_extract`).


def _tidy(s: str) -> str:
    """Markdown bold, math delimiters and a closing full stop around an answer removed."""
    for _ in range(3):  # "**$\\frac{3}{2}$.**": each pass peels one layer
        s = re.sub(r"^\s*(?:\*\*|__)|(?:\*\*|__)\s*$", "", s.strip()).strip()
        s = re.sub(r"(?<!\.)\.$|[。]$", "", s).strip()
        s = re.sub(r"^\$+|\$+$", "", s).strip()
        s = re.sub(r"^\\[(\[]|\\[)\]]$", "", s).strip()
    return s


def _last(pattern: re.Pattern, text: str) -> re.Match | None:
    m = None
    for m in pattern.finditer(text):
        pass
    return m


def _is_formula(line: str) -> bool:
    """A last line that is itself the answer: a formula, a letter or "Label: formula" (no word of
    four or more letters outside LaTeX commands once a leading label is set aside)."""
    bare = re.sub(r"\\[a-zA-Z]+", "", re.sub(r"^\s*[A-Za-z ]{1,20}:", "", line))
    return len(line) <= 60 and not re.search(r"[A-Za-z]{4,}", bare)


def _has_words(s: str) -> bool:
    return bool(re.search(r"[A-Za-z]{4,}", re.sub(r"\\[a-zA-Z]+", "", s)))


def extract(response: str, multi_choice: bool) -> str | None:
    """The answer GPT would extract from a response, by rules; None for GPT's `null`."""
    span = answer_span(response or "")
    if span is None:
        return None
    span = span[-5000:]
    boxed = last_boxed(span)
    if boxed is not None:
        return _tidy(re.sub(r"^\\text\{(.*)\}$", r"\1", boxed.strip())) or None
    cues = [m for m in (_last(_ANSWER_CUE, span), _last(_OPTION_CUE, span) if multi_choice else None) if m is not None]
    if cues:
        m = max(cues, key=lambda m: m.start())
        ans = _tidy(m.group(1))
        if ans:
            return ans
    lines = [l for l in span.strip().splitlines() if l.strip()]
    last = _tidy(re.sub(r"\\[()\[\]]", "", lines[-1])) if lines else ""  # inline math delimiters
    if last and _is_formula(last):
        return last
    if multi_choice:
        letters = set(re.findall(r"(?<![A-Za-z])([A-F])(?![A-Za-z])", last))
        return letters.pop() if len(letters) == 1 else None
    nums = _NUMBER.findall(span)
    return nums[-1] if nums else None


# ---------------------------------------------------------------------------------------------
# Judgement (in place of GPT's `demo_prompt_score`).


def options(question: str) -> dict[str, str]:
    """The lettered choices of a question (`Choices:\\nA:2\\nB:2√{3}` or inline `A. x B. y`)."""
    k = max(question.rfind("Choices:"), question.rfind("Choice:"))
    body = question[k:].split(":", 1)[1] if k != -1 else question
    found = {m.group(1): m.group(2) for m in _OPTION_LINE.finditer(body)}
    if len(found) >= 2:
        return found
    parts = _OPTION_INLINE.split(body)
    inline = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
    return inline if len(inline) >= 2 else {}


def option_letter(answer: str) -> str | None:
    """The option an extracted answer names by its letter: "C", "(C)", "C.", "C: √3", "Option C"."""
    s = re.sub(r"^(?i:(?:the\s+)?(?:correct\s+)?(?:option|choice|answer))\s*(?:(?i:is)\s*)?:?\s*", "", answer.strip())
    m = _PAREN_LETTER.fullmatch(s) or _LETTER.fullmatch(s) or re.fullmatch(r"\(?([a-f])\)?", s)
    return m.group(1).upper() if m else None


def _clean(s: str) -> str:
    s = _tidy(s)
    s = re.sub(r"\\(?:text|mathrm|textbf|mbox|operatorname)\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\left|\\right|\\[,;!]|\\ ", " ", s)
    s = s.replace("√", "\\sqrt").replace("π", "\\pi ").replace("−", "-").replace("×", "\\times ").replace("·", "\\cdot ")
    s = re.sub(r"\\sqrt\s*(\d+(?:\.\d+)?|[a-zA-Z])", r"\\sqrt{\1}", s)
    s = re.sub(r"\\sqrt\s*\(([^()]*)\)", r"\\sqrt{\1}", s)
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree", "", s)  # degrees
    s = re.sub(r"(?<=[\d}])\s*(?:degrees?|deg)\s*$", "", s)
    return re.sub(r"\s+", " ", s).strip()


def _metric(s: str) -> tuple[float, int, float] | None:
    """(value, power, factor) of "50 cm", "0.5 m", "12 cm^2", "3 m³"."""
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*(mm|cm|dm|km|m)(?:\^\{?([23])\}?|([²³]))?", s)
    if not m:
        return None
    power = int(m.group(3) or {"²": 2, "³": 3}.get(m.group(4) or "", 1))
    return float(m.group(1)), power, _LENGTH[m.group(2)] ** power


def _strip_unit(s: str) -> str:
    """A quantity without its unit ("12 square units" -> "12"); expressions with letters are left alone ("2x + 3h")."""
    t = s
    for _ in range(2):
        t = _TRAILING_UNIT.sub("", t).strip()
    return t if t and not re.search(r"[A-Za-z]", re.sub(r"\\[a-zA-Z]+", "", t)) else s


def _verify(gold: str, pred: str) -> bool:
    from m2r.rewards.functions import verify_pool

    if len(pred) > 300 or pred.count("{") > 30 or _COSTLY.search(pred):
        return False  # no MathVerse gold is this long or a power tower; sympy could work for seconds
    return verify_pool(2).verify([(gold, pred)], 5.0)[0]


def _value(s: str) -> float | None:
    s = s.strip()
    if re.fullmatch(r"-?\d+(?:\.\d+)?", s):
        return float(s)
    m = re.fullmatch(r"(-?)\\frac\{(\d+(?:\.\d+)?)\}\{(\d+(?:\.\d+)?)\}", s)
    if m and float(m.group(3)) != 0:
        return (-1 if m.group(1) else 1) * float(m.group(2)) / float(m.group(3))
    return None


def equivalent(pred: str, gold: str) -> bool:
    """Free-form consistency in the judge's sense ("the same meaning"), by rules."""
    if pred.strip() == gold.strip():  # post_check_score
        return True
    p, g = _clean(pred), _clean(gold)
    if not p or p.lower() == "null":
        return False
    if p.replace(" ", "").lower() == g.replace(" ", "").lower():
        return True
    pm, gm = _metric(p), _metric(g)
    if pm and gm:  # "0.5 m" and "50 cm"
        return pm[1] == gm[1] and math.isclose(pm[0] * pm[2], gm[0] * gm[2], rel_tol=1e-9)
    p, g = _strip_unit(p), _strip_unit(g)
    if _has_words(g):  # "domain: [-4, 0) and range: (-3, 1]", "parallel": only the same words match
        return p.replace(" ", "").lower() == g.replace(" ", "").lower()
    pct_p, pct_g = re.search(r"\\?%\s*$", p), re.search(r"\\?%\s*$", g)
    if pct_p or pct_g:
        p, g = re.sub(r"\\?%\s*$", "", p).strip(), re.sub(r"\\?%\s*$", "", g).strip()
        if pct_p and not pct_g:
            pv, gv = _value(p), _value(g)
            if pv is not None and gv is not None and math.isclose(pv / 100, gv, rel_tol=1e-9, abs_tol=1e-12):
                return True
        if pct_g and not pct_p:
            pv, gv = _value(p), _value(g)
            if pv is not None and gv is not None and math.isclose(pv, gv / 100, rel_tol=1e-9, abs_tol=1e-12):
                return True
    if p.count("=") == 1 and g.count("=") == 1:
        (pl, pr), (gl, gr) = p.split("="), g.split("=")
        if pl.strip() != gl.strip() and _FUNCTION_LHS.fullmatch(pl) and _FUNCTION_LHS.fullmatch(gl):
            p, g = pr.strip(), gr.strip()  # "f(x) = -x^2 + 1" and "y = -x^2 + 1"
    elif p.count("=") == 1 and "=" not in g and _FUNCTION_LHS.fullmatch(p.split("=")[0]):
        p = p.split("=")[1].strip()  # "x = 5" and "5"
    if not p:
        return False
    if p.replace(" ", "").lower() == g.replace(" ", "").lower():
        return True
    return _verify(g, p)


def score(item: EvalItem, response: str) -> dict[str, Any]:
    multi = item.meta.get("question_type") == "multi-choice"
    ans = extract(response or "", multi)
    if ans is None:
        return {"extracted": None, "correct": False}
    gold = item.answer.strip()
    if ans.strip() == gold:  # post_check_score
        return {"extracted": ans, "correct": True}
    if multi and re.fullmatch(r"[A-F]", gold):
        letter = option_letter(ans)
        if letter is None:  # the option's text instead of its letter
            opts = options(item.meta.get("question_for_eval") or item.question)
            same = [k for k, v in opts.items() if equivalent(ans, v)]
            letter = same[0] if len(same) == 1 else None
        return {"extracted": letter or ans, "correct": letter == gold}
    return {"extracted": ans, "correct": equivalent(ans, gold)}


def aggregate(items: list[EvalItem], scores: list[float]) -> dict[str, Any]:
    """Accuracy overall and per problem version, subject and subfield (`MathVerse_acc`)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for it, s in zip(items, scores):
        meta = it.meta.get("metadata")
        if isinstance(meta, str):  # VLMEvalKit TSV: a dict written with single quotes
            try:
                meta = json.loads(meta.replace("'", '"'))
            except ValueError:
                meta = {}
        meta = meta if isinstance(meta, dict) else {}
        groups[f"version/{it.meta.get('problem_version') or 'all'}"].append(s)
        groups[f"subject/{it.meta.get('subject') if it.meta.get('subject') not in (None, 'all') else meta.get('subject', 'all')}"].append(s)
        groups[f"subfield/{it.meta.get('subfield') or meta.get('subfield', 'all')}"].append(s)
    out: dict[str, Any] = {"overall": sum(scores) / max(1, len(scores))}
    out.update({k: sum(v) / len(v) for k, v in sorted(groups.items())})
    versions = [k for k in out if k.startswith("version/")]
    out["score"] = out[f"version/{VISION_ONLY}"] if len(versions) > 1 and f"version/{VISION_ONLY}" in out else out["overall"]
    out["extraction"] = EXTRACTION
    return out
