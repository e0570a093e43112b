"""MATH-V: 874 predictions against the official verdicts, a sweep beside the commented golden cases.

`data/mathvision_official_verdicts.json` holds, per case, the ground truth, the options, a response
and `official`: the verdict of the official `evaluation/evaluate.py` extraction (`evaluate`'s
answer rules, `utils.find_math_answer`) and `utils.is_equal`, computed by running a copy of that
code with latex2sympy2 1.9.1 outside this repository, every parse from a fresh parser state (hostile
review, 2026-11-23; 285 cases added and 3 verdicts of `\\tau` against `2\\pi` corrected the same way,
2026-11-23). The responses cover number forms (`5.0`, `05`, `+5`, `\\dfrac{10}{2}`, `\\sqrt{25}`, `5\\%`,
`5,000`, units, degrees, `x=5`, broken braces, ...), fractions and percents, tuples and intervals,
`\\pi`, `\\exp`/`\\ln`/`\\log_{b}`, subscripts, `\\{ \\}`, `\\end{...}`, option letters and option texts in
boxes, after "the answer is", and bare. Our scorer must give the official verdict on every case;
a reading it cannot reproduce goes into `KNOWN_DEPARTURES` below and into departure 5 of
`m2r.eval.mathvision` (fixing one makes this test name it, so the list stays exact). It is empty.
"""

from __future__ import annotations

import json
from pathlib import Path

from m2r.eval import mathvision
from m2r.eval.items import EvalItem

CASES = json.loads((Path(__file__).parent / "data" / "mathvision_official_verdicts.json").read_text(encoding="utf-8"))
KNOWN_DEPARTURES: set[tuple[str, str]] = set()  # (ground truth, response core), each in its 3 wrappings


def _core(response: str) -> str:
    for pre, post in (("\\boxed{", "}"), ("The answer is ", ".")):
        if response.startswith(pre) and response.endswith(post):
            return response[len(pre) : -len(post)]
    return response


def test_official_verdicts_on_874_predictions():
    assert len(CASES) == 874 and 450 < sum(c["official"] for c in CASES) < 800  # both verdicts well represented
    differ = set()
    for c in CASES:
        item = EvalItem(key={"id": "sweep"}, question="q", options=c["options"], answer=c["answer"])
        if mathvision.score(item, c["response"])["correct"] != c["official"]:
            differ.add((c["answer"], _core(c["response"])))
    assert differ == KNOWN_DEPARTURES
