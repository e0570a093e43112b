"""DynaMath (DynaMath/DynaMath_Sample): 501 seed questions x 10 generated variants; loader for the
Hugging Face parquet splits `sample_variant1..10`, the official prompt and scoring, and the
average-case and worst-case accuracies.

Native fields: `id` (the seed question, shared by its variants), `question`, `image` (path) /
`decoded_image` (parquet: `{"bytes", "path"}`), `ground_truth`, `answer_type` (float, multiple
choice, text), `subject`, `knowledge_level`; the variant is the split's number. A VLMEvalKit TSV
(`DynaMath.tsv`) names the seed `qid` and the variant `varid`.

Rules: VLMEvalKit `vlmeval/dataset/dynamath.py` (open-compass/VLMEvalKit@e8e78f0: `preprocess`,
`parse_answer`, `DynaMath_auxeval`, `Dynamath.build_prompt`, `Dynamath.evaluate`), the harness the
DynaMath README points to for evaluation. Its rules refine the DynaMath repo's own
`evaluation/opensource_json_eval.py` and `evaluation/*/..._json_eval.py` (DynaMath/DynaMath@598c3c3).

1. The response is cut to its first `{` .. last `}` (when there are both) and every backslash is
   removed; parsed as JSON, its "short answer" is read by answer type (`parse_answer`):
   float: an all-digit string, else its first space-separated token, a `π` in it meaning "the part
   before `π`, times π" ("2π" = 6.283, "2π/3" is read as 2π, "π" alone fails); multiple choice:
   one character (upper-cased), else the only letter of A-E the upper-cased answer contains (none
   or several fail); text: the answer as it is.
2. No JSON, no "short answer", or one that does not parse: `parse_answer` on the whole cut
   response; for float and multiple choice, when that fails too, GPT is asked to rewrite the
   response as a letter / a three-digit float and `parse_answer` reads its reply.
3. Verdict: float right when |x - gt| <= 0.001; multiple choice when the letter equals gt, or,
   when nothing parsed even after GPT, when gt is in the first three characters of the cut
   response upper-cased; text when the answer lower-cased is a substring of gt lower-cased.
4. Average accuracy over all rows; worst-case accuracy over seed questions, a seed counting only
   when every variant of it is right; both also per subject and knowledge level.
   Our headline `score` is the worst case, the column the run's paper table compares
   ("DynaMath (worst case)" in `m2r.eval.runner.COLUMNS`); VLMEvalKit's `report_primary_metric`
   names the average instead. Both are in `metrics.json`; read the column name before comparing.

The prompt is `Dynamath.build_prompt` (the `DynaMath` dataset, not `DynaMath_noprompt`).

Departures, and what they do to the score:

1. GPT replaced by rules (step 2): the answer GPT would rewrite is looked for in, in order, the
   JSON short answer that did not parse or is not a string (`"B. 12 cm"`, `3.5`), a
   `"short answer": "..."` pair in a response json.loads refused (escaped quotes lose their
   backslash in the cut), the last `\\boxed{}`; then, for multiple choice, "answer/option/choice
   X" and the last line; for float, "the answer is X" and the last number (`extract_answer`).
   A candidate gives a letter when it leads with one ("B. 12 cm", "Choice C", "(B)") or holds a
   single standalone A-E; a number when it reads as one through fractions, roots, π, thousands
   separators, units or a Unicode minus (`frac{7}{2}`, `√2`, `π`, `1,234.5`, `3.5cm`, `−2`).
   Responses GPT would have read but these rules do not (an answer in words, "three and a half")
   are scored wrong; a GPT that misreads a response is not imitated.
2. The reasoning is not graded: text before the last `</think>` is dropped and an
   `<answer>...</answer>` is reduced to its content before step 1 (VLMEvalKit cuts the whole
   response). Only responses with braces in their reasoning change: VLMEvalKit's cut then starts
   inside the reasoning, the JSON fails and GPT (usually) returns the same short answer.
3. Text answers: an empty short answer is wrong (VLMEvalKit: "" is a substring of every gt, so
   right); a response without JSON whose last `\\boxed{}` holds the answer is graded on the box
   content (VLMEvalKit compares the whole response, which is right only when it is a substring of
   gt). Raises the text-type accuracy of M2-format responses; official-format (JSON) responses
   score as in VLMEvalKit.
4. A ground truth that is not a number on a float row scores wrong (VLMEvalKit raises).

Where VLMEvalKit departs from the DynaMath repo's scripts (we follow VLMEvalKit): the repo's prompt
("## Question\\n{q}" + "Please answer in a floating-point number." for floats + one guide for all
types), no upper-casing and `gt in answer[:3]` for multi-character multiple-choice answers,
`gt in answer` (not `answer in gt`) for text, and, when the JSON fails, the response's last line
minus its last character as the short answer (no GPT).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from m2r.eval.items import EvalItem
from m2r.rewards.extract import answer_span, extract_answer, last_boxed, parse_number

GUIDE = (
    "\n## Answer Instruction Please provide an answer to the question outlined above. Your response should adhere to the following JSON "
    "format, which includes two keys: 'solution' and 'short answer'. The 'solution' key can contain detailed steps needed to solve the "
    "question, and the 'short answer' key should provide a concise response. {INST}\n\nExample of expected JSON response format:\n\n"
)
INSTRUCTIONS = {
    "multiple choice": "Provide the corresponing choice option in the 'short answer' key, such as 'A', 'B', 'C', or 'D'.",
    "float": "Format the answer as a three-digit floating-point number and provide it in the 'short answer' key.",
    "text": "Float numbers in the answer should be formatted as three-digit floating-point numbers.",
}
EXAMPLE = json.dumps({"solution": "[Detailed step-by-step explanation]", "short answer": "[Concise Answer]"}, indent=4)
EXTRACTION = "VLMEvalKit rules on the JSON short answer; rule-based extraction where VLMEvalKit asks GPT"
_SHORT_PAIR = re.compile(r'"short answer"\s*:\s*"([^"\n]*)"')
# "B", "(B) 12", "B. 12 cm", "Choice C", "Answer: D": a leading option letter (upper case only: "a triangle" is no answer).
_LEADING_LETTER = re.compile(r"\s*(?:(?i:(?:the\s+)?(?:correct\s+)?(?:option|choice|answer))\s*(?:(?i:is)\s*)?:?\s*)?\(?([A-E])\)?(?=$|[\s.,:;)\]*])")
_LETTER_CUE = re.compile(r"(?i:answer|option|choice)\s*(?:(?i:is)\s*)?:?\s*\(?([A-E])\)?(?![A-Za-z0-9])")
_STANDALONE_LETTER = re.compile(r"(?<![A-Za-z])([A-E])(?![A-Za-z])")


def load(root: str | Path, split: str = "sample") -> list[EvalItem]:
    """Rows of `<split>_variant<k>-*.parquet` (or the older `<split><k>-*.parquet`) under root, k = the variant."""
    root = Path(root)
    files = []
    for f in sorted(root.glob(f"**/{split}*.parquet")):
        m = re.match(rf"{re.escape(split)}(?:_variant)?(\d+)(?!\d)", f.name)
        if m:  # `sample_all` (every variant again) is skipped
            files.append((int(m.group(1)), f))
    if not files:
        raise FileNotFoundError(f"benchmark.root={root} has no {split}_variant<k>*.parquet files; point it at the DynaMath_Sample folder")
    import pyarrow.parquet as pq

    items = []
    for variant, f in files:
        for r in pq.read_table(f).to_pylist():
            img = r.get("decoded_image")
            ref = img["bytes"] if isinstance(img, dict) and img.get("bytes") else root / r["image"]
            items.append(EvalItem(
                key={"id": str(r["id"]), "variant": variant}, question=r["question"], options=[], answer=str(r["ground_truth"]).strip(), images=[ref],
                meta={"answer_type": r["answer_type"], "subject": r.get("subject"), "level": r.get("knowledge_level")},
            ))
    return items


def prompt(item: EvalItem) -> str:
    """VLMEvalKit's `Dynamath.build_prompt`: the question, the JSON guide with the answer type's instruction, the example."""
    inst = INSTRUCTIONS.get(item.meta.get("answer_type"), INSTRUCTIONS["text"])
    return f"## Question\n {item.question}" + GUIDE.format(INST=inst) + EXAMPLE


def preprocess(text: str) -> str:
    """VLMEvalKit's cut: first `{` to last `}` when both are there, then every backslash removed."""
    a, b = text.find("{"), text.rfind("}")
    if 0 <= a < b:
        text = text[a : b + 1]
    return text.replace("\\", "")


def _times_pi(s: str) -> float:
    # "2π" -> 2π; "2π/3" -> 2π as well (only the part before the first π is read); "π" alone raises.
    return float(s.split("π")[0]) * math.pi if "π" in s else float(s)


def parse_answer(answer: str, answer_type: str | None) -> tuple[bool, Any]:
    """VLMEvalKit's `parse_answer`: (parsed, value) of a short answer for the answer type."""
    if answer_type == "float":
        try:
            return True, float(answer) if answer.isdigit() else _times_pi(answer.split(" ")[0])
        except ValueError:
            return False, None
    if answer_type == "multiple choice":
        if len(answer) == 1:
            return True, answer.upper()
        hits = [c for c in "ABCDE" if c in answer.upper()]
        return (True, hits[0]) if len(hits) == 1 else (False, None)
    return True, answer


def _graded_text(response: str) -> str:
    """After the last `</think>`, the content of the last `<answer>` (departure 2); "" for an empty answer tag."""
    span = answer_span(response)
    return span if span is not None else ""


def _json_short_answer(pred: str) -> tuple[bool, Any]:
    """(there is a JSON object with a "short answer", its value)."""
    try:
        obj = json.loads(pred, strict=False)
    except (ValueError, RecursionError):
        return False, None
    if isinstance(obj, dict) and obj.get("short answer") is not None:
        return True, obj["short answer"]
    return False, None


def _number(s: str) -> float | None:
    """A number GPT would write as a three-digit float: fractions, roots, π, separators, units."""
    t = s.strip().strip("$").strip().rstrip(".").replace("−", "-").replace("\\", "")
    if not t or len(t) > 60 or "!" in t or t.count("^") > 1 or re.search(r"\^\s*\{?\s*-?\d{3,}", t):
        return None  # nothing a benchmark answer needs, and sympy could work for minutes on a tower
    x = parse_number(t)
    if x is not None and not re.search(r"[π√/^]|pi|sqrt|frac", t):
        return x
    latex = re.sub(r"(d|t)?frac", r"\\frac", t)
    latex = re.sub(r"sqrt", r"\\sqrt", latex).replace("√", "\\sqrt").replace("π", "\\pi ")
    latex = re.sub(r"(?<![\\a-zA-Z])pi(?![a-zA-Z])", r"\\pi ", latex)
    latex = re.sub(r"\\sqrt\s*(\d+(?:\.\d+)?)", r"\\sqrt{\1}", latex)
    try:
        from latex2sympy2_extended import latex2sympy

        v = complex(latex2sympy(latex).evalf())
    except Exception:  # latex2sympy raises many kinds on text it cannot read
        return x
    return v.real if v.imag == 0 and math.isfinite(v.real) else x


def _last(pattern: re.Pattern, text: str) -> re.Match | None:
    m = None
    for m in pattern.finditer(text[-5000:]):
        pass
    return m


def _gpt_candidates(text: str, short: Any) -> list[str]:
    """Departure 1: where GPT would find the answer it is asked to rewrite, most explicit first."""
    cands = [str(short)] if short is not None else []  # a JSON short answer that did not parse, or is not a string
    pair = _last(_SHORT_PAIR, text)  # a JSON object json.loads refused
    if pair is not None:
        cands.append(pair.group(1))
    boxed = last_boxed(text)
    if boxed is not None:
        cands.append(boxed)
    return cands


def _gpt_letter(cand: str) -> str | None:
    m = _LEADING_LETTER.match(cand)
    if m:
        return m.group(1)
    letters = set(_STANDALONE_LETTER.findall(cand))
    return letters.pop() if len(letters) == 1 else None


def _gpt_choice(text: str, short: Any) -> str | None:
    for cand in _gpt_candidates(text, short):
        letter = _gpt_letter(cand)
        if letter is not None:
            return letter
    cue = _last(_LETTER_CUE, text)
    if cue is not None:
        return cue.group(1)
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return _gpt_letter(lines[-1].strip().strip("*").strip()) if lines else None


def _gpt_float(text: str, short: Any) -> float | None:
    cands = _gpt_candidates(text, short)
    loose = extract_answer(text)  # "the answer is X", the last number
    for cand in cands + ([loose] if loose is not None else []):
        x = _number(cand)
        if x is not None:
            return x
    return None


def short_answer(response: str, answer_type: str | None) -> tuple[bool, Any, str]:
    """(parsed, the short answer as VLMEvalKit reads it, the cut response)."""
    text = _graded_text(response or "")
    pred = preprocess(text)
    has_json, short = _json_short_answer(pred)
    if has_json and isinstance(short, str):
        ok, value = parse_answer(short, answer_type)
        if ok:
            return True, value, pred
    if answer_type not in ("float", "multiple choice"):
        if has_json:  # a short answer that is not a string (VLMEvalKit raises on it); GPT would write it out
            return True, str(short), pred
        boxed = last_boxed(text)
        return True, boxed.strip() if boxed is not None else pred, pred  # departure 3
    ok, value = parse_answer(pred, answer_type)
    if ok:
        return True, value, pred
    value = _gpt_choice(text, short if has_json else None) if answer_type == "multiple choice" else _gpt_float(text, short if has_json else None)
    return value is not None, value, pred


def score(item: EvalItem, response: str) -> dict[str, Any]:
    kind, gt = item.meta.get("answer_type"), item.answer
    parsed, value, pred = short_answer(response, kind)
    if kind == "float":
        try:
            ok = parsed and abs(float(value) - float(gt)) <= 0.001
        except (TypeError, ValueError):  # departure 4: a non-numeric gt
            ok = False
    elif kind == "multiple choice":
        ok = value == gt if parsed else gt in pred[:3].upper()
    else:
        ok = parsed and str(value).strip() != "" and str(value).lower() in gt.lower()  # departure 3: "" never scores
    return {"extracted": value, "correct": bool(ok)}


def _seed(it: EvalItem) -> str:
    # Native rows carry the seed as `id`; VLMEvalKit TSV rows as the column `qid`.
    return str(it.key["id"] if "id" in it.key else it.meta.get("qid", it.meta.get("id", it.key.get("index"))))


def aggregate(items: list[EvalItem], scores: list[float]) -> dict[str, Any]:
    seeds: dict[str, list[float]] = defaultdict(list)
    first: dict[str, EvalItem] = {}
    for it, s in zip(items, scores):
        seeds[_seed(it)].append(s)
        first.setdefault(_seed(it), it)
    worst = {k: float(all(v == 1.0 for v in vs)) for k, vs in seeds.items()}
    out: dict[str, Any] = {
        "average": sum(scores) / max(1, len(scores)), "worst_case": sum(worst.values()) / max(1, len(worst)),
        "seeds": len(seeds), "variants_per_seed": max((len(v) for v in seeds.values()), default=0),
    }
    for field, names in (("subject", ("subject",)), ("level", ("level", "knowledge_level"))):
        groups: dict[str, list[float]] = defaultdict(list)
        worst_groups: dict[str, list[float]] = defaultdict(list)
        for it, s in zip(items, scores):
            groups[str(next((it.meta[n] for n in names if it.meta.get(n)), "all"))].append(s)
        for k, w in worst.items():
            worst_groups[str(next((first[k].meta[n] for n in names if first[k].meta.get(n)), "all"))].append(w)
        for g in sorted(groups):
            out[f"average/{field}/{g}"] = sum(groups[g]) / len(groups[g])
            out[f"worst_case/{field}/{g}"] = sum(worst_groups[g]) / len(worst_groups[g])
    out["score"] = out["worst_case"]
    out["extraction"] = EXTRACTION
    return out
