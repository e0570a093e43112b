"""We-Math: loader for its own `testmini.json` + images, per-row letter scoring, and the official
four-dimensional metrics.

Rules follow the benchmark's own code, github.com/We-Math/We-Math (commit a57a0e8):
`evaluation/four_dimensional_metrics.py` (answer reading, IK/IG/CM/RM, Score strict/loose) and
`evaluation/accuracy.py` (one-, two-, three-step accuracies); VLMEvalKit copies both into
`vlmeval/dataset/utils/wemath.py` and uses them as they are when run without a GPT judge.

Reading an answer (`official_answer`, `load_and_process_data` in the official code): take the text
after the last "Answer" (case-sensitive; the whole response when there is none), strip, delete every
`<`, `>`, `:` and `.`, strip again; the answer is its first character if that is one of A-H, else
none. A row is right when that letter equals the ground truth.

Rows are sub-questions of multi-step problems: `ID` names the problem, `key` the row's role
(`2steps_1`, `2steps_2`, `2steps_multi`, `3steps_1..3`, `3steps_multi`). A problem is
- CM (complete mastery): composite right and, strict, every one-step right / loose, any one-step right;
- RM (rote memorisation): composite right and, strict, some one-step wrong / loose, all one-steps wrong;
- IG (inadequate generalisation): every one-step right, composite wrong;
- IK (insufficient knowledge): some one-step wrong, composite wrong.
IK, IG and CM are reported as fractions of the problems, RM as RM / (CM + RM). The official
Score is (N - 0.5 IG - RM - IK) / N with N = 525 (strict and loose RM): since every problem is in
exactly one of IK, IG, CM, RM this is (CM + 0.5 IG) / N. S1 is the accuracy over all one-step rows,
S2 / S3 the composite accuracy of the two- / three-step problems.

Departures from the official code, and what they do to the score:
1. M2 responses. When the official reading finds no letter, ours reads the M2 answer: the last
   `\\boxed{}` of the graded span (after `</think>`, inside `<answer>`), else the text after the
   last "answer is" / "answer:", else a short bare span; its leading option label ("B", "(B)",
   "B. 15 cm", "Option B"), or the option whose text it equals ("15 cm" -> the letter of "15 cm").
   The official reading gives no letter for `<think>...</think><answer>\\boxed{B}</answer>` (the
   text starts with "think"), so on M2-format responses the official script scores almost every
   row wrong; ours scores the boxed letter. A letter the official reading does find is never
   replaced, so per row our verdict equals the official one or turns an official "no answer" into
   a right or wrong letter: our score is never below the official score on the same responses.
   Official quirks kept for that reason: a response without "Answer" that starts with a capital
   A-H ("Because ...") is read as that letter; "ANSWER: B" is read as "A"; a capitalised
   "Answer: X" inside the reasoning of an M2 response wins over the box.
2. N is the number of problems scored, not a hard-coded 525: the same on the full testmini (525
   problems); on a subset the official formula would count the problems not scored as mastered.
3. A problem missing its composite or one-step rows raises (the official left join leaves it in
   no class while still dividing by 525); RM / (CM + RM) is 0 when CM + RM is 0 (the official
   code raises ZeroDivisionError); S2 / S3 are 0 when there is no two- / three-step problem
   (official: NaN). None of these arises on the full testmini.
4. The per-knowledge-domain accuracies of `accuracy.py` (which need `knowledge_structure_nodes.json`)
   are not reported.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from m2r.eval.items import EvalItem
from m2r.rewards.extract import answer_span, last_boxed

OFFICIAL_PROMPT = "Now, we require you to solve a multiple-choice math question. Please briefly describe your thought process and provide the final answer(option).\nQuestion: {question}\nOption: {option}\nRegarding the format, please answer following the template below, and be sure to include two <> symbols:\n<Thought process>: <<your thought process>> <Answer>: <<your option>>"
LETTERS = "ABCDEFGH"
_DELETED = re.compile(r"[<>:.]")  # the official `str.replace(r'[>><<:.]', '')`
_LABEL = re.compile(r"(?:(?i:option|choice)\s*)?\(?([A-H])(?:\)|[.:,．]|\s*$|\s+(?=[-–—(]))")  # "B", "(B)", "B. 15 cm", "Option B"
_ANSWER_CUE = re.compile(r"answer\s*(?:is|:)\s*", re.I)
_LATEX_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")


def split_options(text: str) -> list[str]:
    """`"A. 3;B. 4; C. 5"` -> `["A. 3", "B. 4", "C. 5"]`. Labels are found in order; a few rows lack
    the `;` ("A. 45° B. 60° ;C. 120°"), use a full-width dot, or skip a letter ("C. No.; F. ...")."""
    starts, pos, last = [], 0, -1
    while last + 1 < len(LETTERS):
        m = re.compile(rf"(?:^|(?<=[\s;])){LETTERS[last + 1]}[.．]").search(text, pos)
        if m is None:  # a skipped letter, only right after a ';'
            m = re.compile(rf";\s*([{LETTERS[last + 2:]}])[.．]").search(text, pos) if last + 2 < len(LETTERS) else None
            if m is None:
                break
            last, start = LETTERS.index(m.group(1)), m.start(1)
        else:
            last, start = last + 1, m.start()
        starts.append(start)
        pos = start + 2
    return [text[s:e].strip().rstrip(";").strip() for s, e in zip(starts, starts[1:] + [len(text)])]


def load(root: str | Path, split: str = "testmini") -> list[EvalItem]:
    root = Path(root)
    path = root / f"{split}.json"
    if not path.exists():
        raise FileNotFoundError(f"benchmark.root={root} has no {split}.json; point it at the We-Math data folder (with 2steps/ and 3steps/)")
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [
        EvalItem(
            key={"ID": r["ID"], "key": r["key"]}, question=r["question"], options=split_options(r.get("option") or ""), answer=str(r["answer"]).strip(),
            images=[root / r["image_path"]], meta={"option_text": r.get("option", ""), "concept": r.get("knowledge concept")},
        )
        for r in rows
    ]


def prompt(item: EvalItem) -> str:
    return OFFICIAL_PROMPT.format(question=item.question, option=item.meta.get("option_text") or "; ".join(item.options))


def official_answer(response: str | None) -> str | None:
    """The official reading, exactly: first character after the last "Answer" once `<>:.` are gone."""
    tail = _DELETED.sub("", (response or "").split("Answer")[-1].strip()).strip()
    return tail[0] if tail and tail[0] in LETTERS else None


def _norm(text: str) -> str:
    text = _LATEX_WRAP.sub(r"\1", text).replace("$", "")
    return re.sub(r"\s+", "", text).rstrip(".。").lower()


def _letter_of(text: str, options: list[str]) -> str | None:
    """The option a short final answer names: its leading label, else the option whose text it is."""
    text = _LATEX_WRAP.sub(r"\1", text).strip()
    m = _LABEL.match(text)
    if m:
        return m.group(1)
    texts = [re.sub(r"^[A-H][.．]\s*", "", o) for o in options]
    hits = [i for i, o in enumerate(texts) if o and _norm(o) == _norm(text)]
    return LETTERS[hits[0]] if len(hits) == 1 and hits[0] < len(LETTERS) else None


def m2_answer(response: str | None, options: list[str] = ()) -> str | None:
    """The M2 reading (departure 1): boxed answer, else "answer is X", else a short bare span."""
    span = answer_span(response) if isinstance(response, str) else None
    if span is None:
        return None
    boxed = last_boxed(span)
    if boxed is not None:
        return _letter_of(boxed, list(options))
    cue, tail = None, span[-5000:]  # the final answer is at the end
    for cue in _ANSWER_CUE.finditer(tail):
        pass
    if cue is not None:
        return _letter_of(tail[cue.end() : cue.end() + 200], list(options))
    return _letter_of(span, list(options)) if len(span.strip()) <= 40 else None


def extract(response: str | None, options: list[str] = ()) -> str | None:
    """A letter A-H: the official reading, else (departure 1) the M2 reading."""
    return official_answer(response) or m2_answer(response, options)


def score(item: EvalItem, response: str) -> dict[str, Any]:
    ans = extract(response, item.options)
    return {"extracted": ans, "correct": ans is not None and ans == item.answer}


def four_dimensional(rows: list[tuple[str, str, bool]], n_problems: int | None = None) -> dict[str, float]:
    """The official metrics from (ID, key, correct) rows: counts, rates (fractions) and scores."""
    by_problem: dict[str, dict[str, bool]] = defaultdict(dict)
    for pid, key, correct in rows:
        by_problem[pid][key] = bool(correct)
    c = dict.fromkeys(["IK", "IG", "CM_strict", "CM_loose", "RM_strict", "RM_loose"], 0)
    steps_right = steps_total = 0
    multi_right: dict[str, list[bool]] = {"2steps": [], "3steps": []}
    for pid, parts in by_problem.items():
        multi_keys = [k for k in parts if k.endswith("_multi")]
        steps = [v for k, v in parts.items() if not k.endswith("_multi")]
        n_steps = 3 if multi_keys and multi_keys[0].startswith("3") else 2
        if len(multi_keys) != 1 or len(steps) != n_steps:
            raise ValueError(f"We-Math problem {pid} has rows {sorted(parts)}: it needs its {n_steps} one-step rows and its composite row; score the whole file")
        multi = parts[multi_keys[0]]
        all_ok, any_ok = all(steps), any(steps)
        if multi:
            c["CM_strict"] += all_ok
            c["RM_strict"] += not all_ok
            c["CM_loose"] += any_ok
            c["RM_loose"] += not any_ok
        else:
            c["IG"] += all_ok
            c["IK"] += not all_ok
        steps_right, steps_total = steps_right + sum(steps), steps_total + len(steps)
        multi_right[multi_keys[0].split("_")[0]].append(multi)
    n = n_problems or len(by_problem)
    out = {f"{k}_count": float(v) for k, v in c.items()}
    out |= {"IK": c["IK"] / n, "IG": c["IG"] / n, "CM_strict": c["CM_strict"] / n, "CM_loose": c["CM_loose"] / n}
    out["RM_strict"] = c["RM_strict"] / max(1, c["CM_strict"] + c["RM_strict"])
    out["RM_loose"] = c["RM_loose"] / max(1, c["CM_loose"] + c["RM_loose"])
    out["score_strict"] = (c["CM_strict"] + 0.5 * c["IG"]) / n
    out["score_loose"] = (c["CM_loose"] + 0.5 * c["IG"]) / n
    out["S1"] = steps_right / max(1, steps_total)
    out["S2"] = sum(multi_right["2steps"]) / max(1, len(multi_right["2steps"]))
    out["S3"] = sum(multi_right["3steps"]) / max(1, len(multi_right["3steps"]))
    out["n_problems"] = float(n)
    return out


def aggregate(items: list[EvalItem], scores: list[float]) -> dict[str, Any]:
    ids = [(it.key.get("ID", it.meta.get("ID")), it.key.get("key", it.meta.get("key"))) for it in items]  # TSV rows: columns in meta
    fd = four_dimensional([(pid, key, bool(s)) for (pid, key), s in zip(ids, scores)])
    return {"accuracy": sum(scores) / max(1, len(scores)), "four_dimensional": fd, "score": fd["score_strict"]}
