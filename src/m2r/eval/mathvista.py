"""MathVista (AI4Math/MathVista): loader for its parquet (images as bytes) or its repository's
`testmini.json` + `images/`, the official query, and the official answer normalisation.

Native fields: `pid`, `question`, `image` (a path), `decoded_image` (parquet: `{"bytes", "path"}`),
`choices` (list or null), `unit`, `precision`, `answer`, `question_type` (multi_choice /
free_form), `answer_type` (text / integer / float / list), `query` (the official zero-shot
prompt), `metadata` (category, task, skills, ...).

Scoring follows lupantech/MathVista at 53d5258: `evaluation/extract_answer.py` (`extract_answer`)
and `evaluation/calculate_score.py` (`normalize_extracted_answer`, `get_most_similar`,
`safe_equal`), with the defaults of their command lines (`quick_extract` and
`ignore_empty_extractions` off):

- extraction without GPT, exactly as officially: an empty response is the extraction ""; a
  multiple-choice response that is one of the option texts is that text; for integer answers a
  response `int()` reads is `str(int(response))`; for float answers one `float()` reads is
  `str(float(response))`.
- normalisation: multiple choice: the extraction stripped; the first "(x)" in it becomes the
  letter X; a letter A.. within the options becomes that option's text, anything else (an empty
  extraction, "b", "B. 3.5", a sentence) becomes the option nearest by Levenshtein distance, the
  first of equals; integer: `str(int(float(x)))` (so "7.9" -> "7"); float:
  `str(round(float(x), int(precision)))`; list: `str(x)`; anything `float()` cannot read
  ("1,000", "7 cm") has no prediction.
- the prediction is correct when it equals the `answer` string.

VLMEvalKit (open-compass/VLMEvalKit, `vlmeval/dataset/utils/mathvista.py`, `post_check`) scores
the same GPT extraction differently: letters through `can_infer`, integers and floats compared
as numbers (not rounded to the precision), and text/list answers as `str(None)`, i.e. never
right; we follow the benchmark's own repository.

Departures, and what each does to the score:

1. Extraction. Officially, every response that the rules above do not settle is sent to GPT-4
   with five worked examples and the reply is the extraction. Ours is rule-based, on the part
   after the last `</think>` (inside the last `<answer>` when there is one): the last `\\boxed{}`,
   else the text after the last "answer is" / "Answer:", else (free form) the last number or
   (multiple choice) the last "(X)" or the whole text when short. Then, as the GPT examples
   show it answering: multiple choice: a leading letter ("B", "(B)", "B.", "B) 3.5", "Option B")
   becomes the capital letter, an option's text (ignoring case and `$`) becomes that text;
   integer/float: thousands commas dropped, `\\frac{a}{b}` and `a/b` computed, else the last
   number ("7 cm" -> "7", "45%" -> "45"); list: the numbers as "[a, b]". Responses whose answer
   GPT would find but these rules do not (an answer stated only in words, "fourteen", or not at
   the end, or only in the reasoning) are scored wrong; ones where the rules pick a stray number
   may be scored either way. An answer the rules cannot find is the extraction "", which the
   official normalisation turns into the shortest option of a multiple-choice row (as it does
   for an empty response). Measured on the 16,998 responses in the repository's `results/`
   (program-of-thought outputs left out): our verdicts agree with those from the stored GPT-4
   extractions on 92.2% of them, and the accuracy is 25.1% against 26.2%. Our normalisation of
   the stored GPT-4 extractions gives the stored prediction on all 22,998 of them, apart from 277
   integer rows scored by an older calculate_score.py (`int(x)`, not `int(float(x))`).
2. Free-form rows with `answer_type` "text" make the official code raise (none in testmini);
   we compare `str(extraction)`.
3. The edit distance is computed on the first 1000 characters of an extraction (our rules give
   longer ones only for a bare, unanswered wall of text).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from m2r.eval.items import EvalItem, image_ref, read_rows
from m2r.rewards.extract import graded_text

EXTRACTION = "rule-based (the official scorer uses GPT-4 extraction)"
MAX_DISTANCE_CHARS = 1000


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
    """Levenshtein distance (insertions, deletions, substitutions), as `Levenshtein.distance`."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def normalize(extraction: Any, item: EvalItem) -> str | None:
    """calculate_score.py `normalize_extracted_answer` (ignore_empty_extractions off)."""
    qt, at, precision = item.meta.get("question_type"), item.meta.get("answer_type"), item.meta.get("precision")
    if qt == "multi_choice":
        ext = extraction.strip() if isinstance(extraction, str) else str(extraction)
        letter = re.findall(r"\(([a-zA-Z])\)", ext)
        if letter:
            ext = letter[0].upper()
        letters = [chr(65 + i) for i in range(len(item.options))]
        if ext in letters:
            return item.options[letters.index(ext)]
        if not item.options:
            return None
        ext = ext[:MAX_DISTANCE_CHARS]  # departure 3
        d = [edit_distance(ext, c) for c in item.options]
        return item.options[d.index(min(d))]
    try:
        if at == "integer":
            return str(int(float(extraction)))
        if at == "float":
            return str(round(float(extraction), int(precision)))
    except (TypeError, ValueError, OverflowError):  # officially `except Exception`: no prediction
        return None
    return None if extraction is None else str(extraction)  # list (officially), text (departure 2)


# ------------------------------------------------------------------------------------------------
# Extraction: extract_answer.py's rules, then our rules where it would ask GPT-4 (departure 1).

_ANSWER_IS = re.compile(r"(?:answer|option|choice)(?:\s+letter)?\s*(?:is|:)\s*:?\s*([^\n]+)", re.I)
_NUM = re.compile(r"-?\d+(?:\.\d+)?")
_LEAD_LETTER = re.compile(r"(?:option|choice)?\s*\(?([A-Za-z])\)?(?:$|[.):]|\s)", re.I)
_NAMED_LETTER = re.compile(r"\b(?:option|choice)\s*\(?([A-Z])\)?(?![A-Za-z])", re.I)


def _last_boxed(text: str) -> str | None:
    """Content of the last balanced `\\boxed{...}`, None if there is none (linear: one scan per box tried)."""
    start = text.rfind("\\boxed{")
    for _ in range(8):
        if start == -1:
            return None
        depth, j = 1, start + len("\\boxed{")
        while j < len(text) and depth:
            depth += (text[j] == "{") - (text[j] == "}")
            j += 1
        if depth == 0:
            return text[start + len("\\boxed{") : j - 1]
        start = text.rfind("\\boxed{", 0, start)
    return None


def _unwrap(s: str) -> str:
    """`$...$`, `\\text{...}` and `\\mathrm{...}` wrappers and a trailing full stop removed, `^\\circ` as °."""
    s = re.sub(r"\\(?:text|mathrm|textbf|mathbf)\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\^\s*\{?\\circ\}?", "°", s)
    return s.replace("\\$", "").replace("$", "").strip().rstrip(".").strip()


def _candidate(text: str, kind: str) -> str:
    """The answer span: the last box, else what follows the last "answer is" / "Answer:" (up to a
    full stop), else by kind: the last "(X)" or the short whole text (choice), the last number
    (number), the last line (list)."""
    box = _last_boxed(text)
    if box is not None:
        return box
    m = None
    for m in _ANSWER_IS.finditer(text[-5000:]):
        pass
    if m is not None:
        span = m.group(1).strip()
        return span.rstrip(".") if _NUM.fullmatch(span.rstrip(".")) else re.split(r"\.\s|\.$", span)[0]
    tail = text[-5000:]
    if kind == "choice":
        letters = re.findall(r"\(([A-Za-z])\)", tail)
        return f"({letters[-1]})" if letters else (text.strip() if len(text.strip()) <= 200 else "")
    if kind == "list":
        lines = [l for l in tail.strip().splitlines() if l.strip()]
        return lines[-1] if lines else ""
    nums = _NUM.findall(re.sub(r"(?<=\d),(?=\d{3}\b)", "", tail))
    return nums[-1] if nums else ""


def _as_number(s: str) -> str:
    """A number GPT would report from an answer span: commas dropped, fractions computed, else the last number."""
    s = _unwrap(s)
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)
    fr = re.fullmatch(r"(-?)\\[dt]?frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}|(-?)(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)", s)
    if fr:
        sign, a, b = (fr.group(1), fr.group(2), fr.group(3)) if fr.group(2) else (fr.group(4), fr.group(5), fr.group(6))
        if float(b) != 0:
            return str((-1 if sign else 1) * float(a) / float(b))
    try:
        float(s)
        return s
    except ValueError:
        nums = _NUM.findall(s)
        return nums[-1] if nums else s


def _rule_extract(response: str, item: EvalItem) -> str:
    """What we take in place of GPT-4's extraction (departure 1)."""
    mc = item.meta.get("question_type") == "multi_choice"
    at = item.meta.get("answer_type")
    cand = _candidate(graded_text(response), "choice" if mc else "list" if at == "list" else "number")
    if mc:
        c = _unwrap(cand)
        lead = _LEAD_LETTER.match(c) or _NAMED_LETTER.search(c)
        if lead and ord(lead.group(1).upper()) - 65 < len(item.options):
            return lead.group(1).upper()
        for o in item.options:
            if c.lower() == _unwrap(o).lower():
                return o
        return c
    if at in ("integer", "float"):
        return _as_number(cand)
    if at == "list":
        nums = _NUM.findall(_unwrap(cand).replace(",", " "))
        return "[" + ", ".join(nums) + "]" if nums else _unwrap(cand)
    return _unwrap(cand)


def extract(response: str | None, item: EvalItem) -> str:
    """extract_answer.py `extract_answer`: its rule steps on the raw response, then ours for GPT-4's part."""
    response = response or ""
    if response == "":
        return ""
    if item.meta.get("question_type") == "multi_choice" and response in item.options:
        return response
    at = item.meta.get("answer_type")
    if at == "integer":
        try:
            return str(int(response))
        except ValueError:
            pass
    if at == "float":
        try:
            return str(float(response))
        except ValueError:
            pass
    return _rule_extract(response, item)


def score(item: EvalItem, response: str | None) -> dict[str, Any]:
    """{"extracted": the normalised prediction, "correct"} for one response (calculate_score.py `safe_equal`)."""
    pred = normalize(extract(response, item), item)
    return {"extracted": pred, "correct": pred is not None and pred == item.answer}


def aggregate(items: list[EvalItem], scores: list[float]) -> dict[str, Any]:
    from m2r.eval.metrics import GroupAccuracy

    acc = GroupAccuracy(sorted({str(it.meta.get("subject")) for it in items}))
    for it, s in zip(items, scores):
        acc.update(str(it.meta.get("subject")), s)
    out = acc.compute()
    return {"accuracy": out, "score": out["overall"], "extraction": EXTRACTION}
