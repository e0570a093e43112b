"""Golden cases for MathVerse: hand-written responses with the verdict of the official pipeline,
MathVerse `evaluation/extract_answer_s1.py` + `evaluation/score_answer_s2.py` with the prompts in
`evaluation/prompts.py` (ZrrSkywalker/MathVerse@937b090), as run by VLMEvalKit
`vlmeval/dataset/utils/mathverse.py` (open-compass/VLMEvalKit@e8e78f0).

Both official steps are GPT calls, so each verdict is the official rule applied to the answer GPT
would extract: the extraction (per `demo_prompt_extract` and its six examples, noted as
`extract -> "..."`) is right when it equals the gold after stripping (`post_check_score` /
`--quick_match`), else by the judge's stated rule (`demo_prompt_score`): multiple choice only on a
complete match with the gold option (letter, or the option's text: judge example 5), free form
when "the meaning is expressed in the same way" ("0.5m and 50cm"), with the judge's examples
(example 1: `(-2, 1)` vs `(-2,1]` is 0; example 3: a partial answer is 0; example 4: `null` is 0).
Our scorer replaces both GPT steps by rules (module docstring, departures 1 and 2); where a GPT
judge's verdict is not settled by its prompt (rounded decimals for an exact gold) the case is in
`DEPARTURES` with our verdict, not here.
"""

from __future__ import annotations

import pytest

from m2r.eval import mathverse
from m2r.eval.items import EvalItem

MC, FF = "multi-choice", "free-form"
# The judge's own multiple-choice question (demo_prompt_score, examples 2 and 4): gold C.
CIRCLE = "As shown in the figure, circle O has a radius 1.0, if angle BAC = 60.0, then the length of BC is ()\nChoices:\nA:2\nB:2√{3}\nC:√{3}\nD:2√{2}"
# The repo's judge example 5: options inline after the question, gold A.
ELLIPSE = ("Given the graph of the ellipse that intersects with x-axis at 9 and -9 and with y-axis at 3 and -3, determine its equation."
           "A. \\frac{x^2}{81} + \\frac{y^2}{9} = 1 B. Can not determine.\n")


def R(answer: str) -> str:
    return f"<think>Reasoning.</think><answer>\\boxed{{{answer}}}</answer>"


def item(kind: str, gold: str, question: str = "", version: str = "Vision Only", subject: str = "Plane Geometry", subfield: str = "Length") -> EvalItem:
    return EvalItem(key={"sample_index": "0"}, question="", options=[], answer=gold,
                    meta={"question_type": kind, "question_for_eval": question, "problem_version": version, "subject": subject, "subfield": subfield})


CASES = [
    # --- multiple choice: complete match with the gold option ---
    (MC, "C", CIRCLE, R("C"), True),  # extract -> "C"; post_check_score: equal
    (MC, "C", CIRCLE, "BC = 2 sin 60° = √3.\nTherefore, the correct option is C.", True),  # extract -> "C" (extract example 2: the option letter)
    (MC, "C", CIRCLE, "So we get BC.\n**Answer: C**", True),  # extract -> "C"
    (MC, "C", CIRCLE, "(C)", True),  # extract -> "C"
    (MC, "C", CIRCLE, "The correct one is C.", True),  # extract -> "C"
    (MC, "C", CIRCLE, "The answer is C:√{3}", True),  # extract -> "C:√{3}"; judge: option C, letter and text both match
    (MC, "C", CIRCLE, "Answer: B:2√{3}", False),  # extract -> "B:2√{3}"; judge example 2: 0
    (MC, "C", CIRCLE, R("√{3}"), True),  # extract -> "√{3}", the text of option C; judge example 5 (option text): 1
    (MC, "C", CIRCLE, R("2"), False),  # extract -> "2", the text of option A: 0
    (MC, "C", CIRCLE, R("A and C"), False),  # two options: no complete match, 0
    (MC, "C", CIRCLE, "I cannot determine the answer without more information.", False),  # extract -> "null" (extract example 4); judge example 4: 0
    (MC, "C", CIRCLE, "", False),  # no response: extract -> "" / null: 0
    (MC, "A", ELLIPSE, R("\\frac{x^2}{81} + \\frac{y^2}{9} = 1"), True),  # judge example 5 (repo prompts.py): the option's text: 1
    (MC, "A", ELLIPSE, R("B"), False),  # another letter: 0
    # --- free form: quick match, else the same meaning ---
    (FF, "14", "", R("14"), True),  # post_check_score: equal
    (FF, "14", "", R("13"), False),  # different value: 0
    (FF, "14", "", "So the length is approximately 14.0 cm.", True),  # extract -> "14.0" / "14.0 cm"; same value, unit: 1
    (FF, "12", "", R("12\\text{ cm}"), True),  # same value with its unit: 1
    (FF, "24", "", R("24 square units"), True),  # same value with its unit: 1
    (FF, "4", "", R("4.5"), False),  # different value: 0
    (FF, "22.3", "", "Given that AB = 17.6 meters, we can now substitute into the equation:\n\nd = 17.6 / cos(38°)\n\nTherefore, to one decimal place, "
     "the distance d between Ned and Bart is approximately 22.3 meters.", True),  # extract example 5 -> "22.3": equal
    (FF, "(-2, 1)", "", "Rounded to two decimal places, the perimeter of the sector is approximately:\n\n(-2, 1)", True),  # extract example 1 -> "(-2, 1)": equal
    (FF, "\\frac{3}{2}", "", R("1.5"), True),  # same value, other notation (LaTeX fraction vs decimal): 1
    (FF, "2\\sqrt{3}", "", R("2√3"), True),  # Unicode root for \sqrt: same: 1
    (FF, "2\\sqrt{3}", "", R("\\sqrt{12}"), True),  # equal exact values: 1
    (FF, "\\frac{\\pi}{3}", "", R("\\frac{1}{3}\\pi"), True),  # equal exact values: 1
    (FF, "60°", "", R("60"), True),  # degrees sign dropped, same meaning: 1
    (FF, "60", "", R("60^\\circ"), True),  # same: 1
    (FF, "0.5 m", "", R("50 cm"), True),  # the judge prompt's own example ("0.5m and 50cm"): 1
    (FF, "12 cm^2", "", R("1200 mm^2"), True),  # same area in other units: 1
    (FF, "50\\%", "", R("0.5"), True),  # same quantity as a fraction of one: 1
    (FF, "(-2,1]", "", R("(-2, 1)"), False),  # judge example 1: other bracket: 0
    (FF, "(-2,1]", "", R("(-2, 1]"), True),  # same interval, spacing aside: 1
    (FF, "domain: [-4, 0) and range: (-3, 1]", "", "Final values:\nRange: \\((-3, 1]\\)", False),  # judge example 3: partial answer: 0
    (FF, "y=-x^2-2x+1", "", R("f(x) = -x^2 - 2x + 1"), True),  # extract example 6 form; the same function: 1
    (FF, "y=2x+1", "", R("y = 2x - 1"), False),  # different function: 0
    (FF, "y=\\frac{1}{2}x", "", R("y=0.5x"), True),  # same equation: 1
    (FF, "5", "", R("x = 5"), True),  # the value named with its variable: 1
    (FF, "3", "", "The answer is 3 and 5.", False),  # extract -> "3 and 5": not a complete match: 0
    (FF, "10", "", "<think>First guess \\boxed{5}.</think><answer>\\boxed{10}</answer>", True),  # extract -> the final answer "10": 1
    (FF, "14", "", "I cannot solve this.", False),  # extract -> "null": 0
    (FF, "1,2", "", R("2,1"), True),  # the same two solutions in another order: 1
]


@pytest.mark.parametrize("kind,gold,question,response,official", CASES)
def test_official_verdict(kind, gold, question, response, official):
    assert mathverse.score(item(kind, gold, question), response)["correct"] is official


# Our departures (module docstring), (kind, gold, response, ours): a GPT judge may accept these.
DEPARTURES = [
    (FF, "2\\sqrt{3}", R("3.46"), False),  # departure 2: a rounded decimal of an exact gold
    (FF, "\\sqrt{13}", "The length is about 3.61 units.", False),  # departure 2: same
    (FF, "2", R("two"), False),  # departure 2: wording
]


@pytest.mark.parametrize("kind,gold,response,ours", DEPARTURES)
def test_departures(kind, gold, response, ours):
    assert mathverse.score(item(kind, gold), response)["correct"] is ours


def test_extraction_rules():
    assert mathverse.extract("Thus the answer is: $\\frac{3}{2}$.", False) == "\\frac{3}{2}"
    assert mathverse.extract("Hence the choice is (B).", True) == "B"
    assert mathverse.extract("The perimeter is 12 and the area 9.", False) == "9"  # no cue: the last number
    assert mathverse.extract("<answer></answer>", False) is None
    assert mathverse.options(CIRCLE) == {"A": "2", "B": "2√{3}", "C": "√{3}", "D": "2√{2}"}
    assert mathverse.options(ELLIPSE) == {"A": "\\frac{x^2}{81} + \\frac{y^2}{9} = 1", "B": "Can not determine."}


def test_accuracy_per_version_subject_subfield():
    # MathVerse_acc: the mean per problem_version, subject and subfield; `score` is Vision Only's when several versions are there.
    rows = [("Vision Only", "Plane Geometry", "Length", True), ("Vision Only", "Functions", "Expression", False),
            ("Text Dominant", "Plane Geometry", "Length", True), ("Text Dominant", "Plane Geometry", "Angle", True)]
    items = [item(FF, "14", version=v, subject=s, subfield=f) for v, s, f, _ in rows]
    scores = [float(mathverse.score(it, R("14" if ok else "13"))["correct"]) for it, (*_, ok) in zip(items, rows)]
    m = mathverse.aggregate(items, scores)
    assert m["overall"] == pytest.approx(3 / 4) and m["version/Vision Only"] == pytest.approx(1 / 2) and m["version/Text Dominant"] == 1.0
    assert m["score"] == pytest.approx(1 / 2)
    assert m["subject/Plane Geometry"] == 1.0 and m["subject/Functions"] == 0.0 and m["subfield/Length"] == 1.0 and m["subfield/Expression"] == 0.0
    only = mathverse.aggregate(items[:2], scores[:2])
    assert only["score"] == only["overall"] == pytest.approx(1 / 2)
