"""LogicVista: loader for its own `data/dataset.json` + `images/`, and set-of-options scoring.

Native fields per id (`v1_0` ... `v1_447`): `imagename`, `question` (the options are in the image
or in the text, "(A) 27 (B) 48 ..."), `answer` (one or several options: "C", "B, D", or an option
number such as "3"), `reasoning`, `skill` (one of inductive, deductive, numerical, spatial,
mechanical), `broad_capability`, `specific_capability`.

Rules follow the benchmark's own code, github.com/Yijia-Xiao/LogicVista (commit e5795f1),
`eval/extract_accuracy.py` and `eval/analyze_accuracy.py`:
1. the response read is the text after "ASSISTANT:" when present (`split("ASSISTANT:")[1]`);
2. stripped, an empty response stays `[""]`; a one-character response that is a letter other than
   a-e, or neither a letter nor a digit, becomes "ZZZZZ" (no answer: a bare "F" or "G" is wrong even
   when F or G is right; the official GPT-4 results record v1_4 "G" -> zzzzz);
3. anything else goes to GPT-4, asked which option letters the response chose (inferring from
   the choices when it names none; "ZZZZZ" when none);
4. the ground truth is `answer.split(", ")`; both lists lower-cased and sorted must be equal;
5. accuracy overall and per skill (`str.contains` on the skill list).
VLMEvalKit (`vlmeval/dataset/utils/logicvista.py`) asks its judge for the letters as one string
("AC") and compares the sorted letters the same way.

Departures, and what they do to the score:
1. GPT-4 extraction is replaced by rules (`extract`). Read, in order: the graded span (after
   `</think>`, inside `<answer>`); in it the last `\\boxed{}`; else the text after the last
   "answer / option / choice (is|:)" that names an option; else the span itself. From that text:
   the option whose text it is ("They would all require the same effort" -> E, with the options
   taken from the last "(A) ... (B) ..." list of the question), else a leading run of labels
   ("B, D", "A and C", "(D) Some ...", "1) (A)", "BD"), else the one option text it contains, else
   (bare spans of at most 200 characters) every standalone capital A-H in it ("proposals A and B
   complete ..."). Labels are numbers instead of letters when the ground truth is a number (v1_20,
   "Select from 1-5"). Responses the GPT reads but these rules do not (a letter deep in long prose,
   a paraphrase of an option, "15:40" read as "True") score wrong here; prose naming other letters
   in passing may be read as several options. Measured on the ten result files the authors
   published (eval/results/*.csv: 4,480 responses with the official GPT-4 verdicts), the verdicts
   agree on 97.7% of rows; the accuracy is the same for GPT-4, LLaVA-13B, LLaVA-NeXT-7B, BLIP-2,
   Otter and DePlot, and 0.2 to 2.2 points lower for LLaVA-7B, InstructBLIP-7B and the two
   MiniGPT-4 models, whose answers are long prose.
2. Labels are compared as sets, not sorted lists: a response naming one option twice is read once
   (the GPT usually lists a chosen option once).
3. The row with an empty ground truth (v1_382, no question) is never right; officially it is right
   exactly when the response is empty ([""] == [""]); VLMEvalKit never counts it.
4. `prompt` adds one line asking for the option letter(s) (VLMEvalKit sends the question alone),
   because rules, unlike the GPT, need a short final answer.
5. The capability breakdown of `analyze_accuracy.py` is not reported (it reads a `capability`
   field the released dataset.json no longer has; VLMEvalKit dropped it too).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from m2r.eval.items import EvalItem
from m2r.rewards.extract import answer_span, last_boxed

EXTRACTION = "rule-based (the official pipeline uses GPT extraction)"
SKILLS = ("inductive", "deductive", "numerical", "spatial", "mechanical")
NO_ANSWER = frozenset()
_LATEX_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")
_PREFIX = re.compile(r"[^\w(]*(?:\d{1,2}[.)]\s+)?(?:(?i:options?|choices?|figures?|boxes|box|shapes?|proposals?|grids?|answers?)\s*[:：]?\s*)?")  # junk, "1. ", "Option "
_LETTER = re.compile(r"\(?([A-H])\)?(?![A-Za-z0-9'’])")  # an option letter not glued to a word
_NUMBER = re.compile(r"\(?(\d{1,2})\)?(?!\d|[.,]\d)")
_SEP = re.compile(r"\s*(?:,|;|/|&|\+|，|、|\band\b)\s*(?:and\s+)?")
_CUE = re.compile(r"\b(?:answer|option|choice)s?\b(?:\s+(?:is|are|would be|should be|will be|=))?\s*[:：]?\s*", re.I)


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


def question_options(question: str) -> dict[str, str]:
    """Options written in the question: "(A) 27 (B) 48" or "A) 10 B) 12" -> {"A": "27", "B": "48"}.
    The last such list counts ("Select from (A), (B), (C). (A) 4cm, (B) 6cm, (C) 8cm")."""
    def label(letter: str) -> re.Pattern:
        return re.compile(rf"\({letter}\)|(?<![A-Za-z(]){letter}\)")

    for first in reversed(list(label("A").finditer(question))):
        starts, pos = [("A", first.start(), first.end())], first.end()
        for letter in "BCDEFGH":
            m = label(letter).search(question, pos)
            if m is None:
                break
            starts.append((letter, m.start(), m.end()))
            pos = m.end()
        ends = [s for _, s, _ in starts[1:]] + [len(question)]
        texts = {letter: question[e:end].strip(" ,;.\n\t") for (letter, _, e), end in zip(starts, ends)}
        if len(texts) >= 2 and all(texts.values()):
            return texts
    return {}


def _norm(text: str) -> str:
    text = _LATEX_WRAP.sub(r"\1", text)
    return re.sub(r"\s+", " ", re.sub(r"[$€£¥]", "", text)).strip().strip(".。").strip().lower()


def _label_run(text: str, numbered: bool) -> frozenset[str]:
    """A leading run of option labels: "B, D", "A and C", "(D) Some ...", "1. A", "BD"; "3" when numbered."""
    text = _LATEX_WRAP.sub(r"\1", text).replace("$", "").strip().rstrip(".。").strip()
    if not numbered and re.fullmatch(r"\(?[A-Za-z]\)?", text):  # a lone letter names that option (I too: "Select from A-I")
        return frozenset({text.strip("()").upper()})
    if not numbered and re.fullmatch(r"[A-H]{2,8}", text) and len(set(text)) == len(text):  # "BD": the judge's own format in VLMEvalKit
        return frozenset(text)
    label = _NUMBER if numbered else _LETTER
    pos = 0 if numbered else _PREFIX.match(text).end()
    labels: list[str] = []
    while (m := label.match(text, pos)) is not None:
        labels.append(m.group(1))
        sep = _SEP.match(text, m.end())
        if sep is None:
            break
        pos = sep.end()
    return frozenset(labels)


def _contained_option(text: str, options: dict[str, str]) -> frozenset[str]:
    low = _norm(text)
    hits = [k for k, v in options.items() if len(_norm(v)) >= 2 and re.search(rf"(?<!\w){re.escape(_norm(v))}(?!\w)", low)]
    return frozenset(hits) if len(hits) == 1 else NO_ANSWER


def _options_in(text: str, options: dict[str, str], numbered: bool, bare: bool) -> frozenset[str]:
    exact = [k for k, v in options.items() if _norm(v) and _norm(v) == _norm(text)]
    if len(exact) == 1:
        return frozenset(exact)
    run = _label_run(text, numbered)
    if run:
        return run
    found = _contained_option(text, options)
    if found or not bare or len(text.strip()) > 200:
        return found
    if numbered:
        return frozenset(re.findall(r"(?<![\d.])\d{1,2}(?![\d.])", text)) if len(text.strip()) <= 60 else NO_ANSWER
    return frozenset(re.findall(r"(?<![A-Za-z0-9'’])([A-H])(?![A-Za-z0-9'’])", text))


def extract(response: str | None, question: str = "", options: list[str] | None = None, numbered: bool = False) -> frozenset[str]:
    """The options a response chooses (upper-case letters, or numbers when the options are
    numbered); empty when it names none."""
    entry = response or ""
    if "ASSISTANT:" in entry:  # official rule 1
        entry = entry.split("ASSISTANT:")[1]
    s = entry.strip()
    if not s or (len(s) == 1 and ((s.isalpha() and s.lower() not in "abcde") or (not s.isalpha() and not s.isnumeric()))):  # official rule 2
        return NO_ANSWER
    opts = {chr(65 + i): re.sub(r"^[A-H][.)．]\s*", "", o) for i, o in enumerate(options)} if options else question_options(question)
    span = answer_span(entry)
    if span is None:
        return NO_ANSWER
    boxed = last_boxed(span)
    if boxed is not None:
        return _options_in(boxed, opts, numbered, bare=False)
    tail = span[-5000:]  # the final answer is at the end; bounds the work on pathological responses
    for cue in list(_CUE.finditer(tail))[::-1][:20]:
        found = _options_in(tail[cue.end() : cue.end() + 200].split("\n")[0], opts, numbered, bare=False)
        if found:
            return found
    return _options_in(span, opts, numbered, bare=True)


def gold_options(answer: str) -> frozenset[str]:
    """Official rule 4: `answer.split(", ")`, case-insensitive."""
    return frozenset(a.strip().upper() for a in answer.split(", ") if a.strip())


def score(item: EvalItem, response: str) -> dict[str, Any]:
    gold = gold_options(item.answer)
    numbered = bool(gold) and all(g.isdigit() for g in gold)  # "Select from 1-5": the options are numbers
    pred = extract(response, item.question, item.options, numbered)
    return {"extracted": ",".join(sorted(pred)) or None, "correct": bool(pred) and pred == gold}


def _skills(item: EvalItem) -> str:
    """The skill field as text: a list in dataset.json, a string column in VLMEvalKit's TSV."""
    value = item.meta.get("skills", item.meta.get("skill", ""))
    return " ".join(value) if isinstance(value, list) else str(value)


def aggregate(items: list[EvalItem], scores: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {"overall": sum(scores) / max(1, len(scores))}
    for skill in SKILLS:
        vals = [s for it, s in zip(items, scores) if skill in _skills(it)]  # official: str.contains on the skill column
        if vals:
            out[f"skill/{skill}"] = sum(vals) / len(vals)
    return out | {"score": out["overall"], "extraction": EXTRACTION}
