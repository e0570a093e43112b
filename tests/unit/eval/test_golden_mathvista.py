"""Golden cases for the MathVista scorer: hand-written responses, the extraction the official
pipeline would produce, and the verdict of the official code (lupantech/MathVista 53d5258,
evaluation/extract_answer.py `extract_answer` + evaluation/calculate_score.py
`normalize_extracted_answer` / `safe_equal`, command-line defaults).

The "extraction" column is what the official `extract_answer` returns: for an empty response,
a multiple-choice response equal to an option, and integer/float responses that `int()` /
`float()` read, its own rules (marked RULE); otherwise GPT-4's reply (marked GPT), which we
assume to be what its five in-context examples show: the capital option letter for a stated
choice, the bare number (no units, no thousands separator, fractions as decimals) for numeric
answers, a Python list "[a, b]" for lists. The verdict is `normalize_extracted_answer` applied
to that extraction and compared with the answer; it was confirmed by running a copy of those two
functions (with python-Levenshtein) outside this repository. Cases where our rules knowingly
extract differently from GPT are in `test_departures_from_gpt_extraction`.

Abbreviations: NEA = normalize_extracted_answer; MS = get_most_similar (Levenshtein, first of equals).
"""

from __future__ import annotations

import pytest

from m2r.eval import mathvista
from m2r.eval.items import EvalItem

C3 = {"question_type": "multi_choice", "answer_type": "text", "precision": None, "choices": ["2.1", "3.5", "4.0"], "answer": "3.5"}
SHORT = {"question_type": "multi_choice", "answer_type": "text", "precision": None, "choices": ["12", "3", "45"], "answer": "3"}
YN = {"question_type": "multi_choice", "answer_type": "text", "precision": None, "choices": ["Yes", "No"], "answer": "No"}
DEG = {"question_type": "multi_choice", "answer_type": "text", "precision": None, "choices": ["30°", "45°", "60°"], "answer": "45°"}
POP = {"question_type": "multi_choice", "answer_type": "text", "precision": None,
       "choices": ["The population will decrease", "The population will increase"], "answer": "The population will increase"}
INT = {"question_type": "free_form", "answer_type": "integer", "precision": None, "choices": None, "answer": "14"}
NEG = {"question_type": "free_form", "answer_type": "integer", "precision": None, "choices": None, "answer": "-4"}
F1 = {"question_type": "free_form", "answer_type": "float", "precision": 1, "choices": None, "answer": "1.2"}
F2 = {"question_type": "free_form", "answer_type": "float", "precision": 2, "choices": None, "answer": "1.46"}
HALF = {"question_type": "free_form", "answer_type": "float", "precision": 1, "choices": None, "answer": "0.5"}
THREE = {"question_type": "free_form", "answer_type": "float", "precision": 1, "choices": None, "answer": "3.0"}
MONEY = {"question_type": "free_form", "answer_type": "float", "precision": 2, "choices": None, "answer": "1.45"}
NOPREC = {"question_type": "free_form", "answer_type": "float", "precision": None, "choices": None, "answer": "2.5"}
LIST = {"question_type": "free_form", "answer_type": "list", "precision": None, "choices": None, "answer": "[2014, 2016]"}

# (row fields, response, official extraction, official verdict)  # how the official code gets there
CASES = [
    # -- multiple choice --------------------------------------------------------------------
    (C3, "\\boxed{B}", "B", True),  # GPT "B"; NEA: "B" in letters -> choices[1] == "3.5"
    (C3, "\\boxed{(B) 3.5}", "(B) 3.5", True),  # GPT copies "(B) 3.5"; NEA: re '\(([a-zA-Z])\)' -> "B" -> "3.5"
    (C3, "3.5", "3.5", True),  # RULE: response in choices -> "3.5"; NEA: MS("3.5") == "3.5"
    (C3, "", "", False),  # RULE: empty response -> ""; NEA: MS("") ties at 3 -> first option "2.1"
    (SHORT, "", "", True),  # RULE ""; NEA: MS("") -> "3", the shortest option, which is the answer
    (C3, "\\boxed{3.4}", "3.4", True),  # GPT "3.4"; NEA: not a letter -> MS: "3.5" at distance 1
    (C3, "\\boxed{b}", "B", True),  # GPT answers the capital letter; NEA -> "3.5"
    (C3, "After comparing, the answer is C.", "C", False),  # GPT "C"; NEA -> "4.0"
    (C3, "Answer: (C) 4.0", "C", False),  # GPT "C"; NEA -> "4.0"
    (C3, "\\boxed{E}", "E", False),  # GPT "E"; NEA: "E" is not among A-C -> MS ties at 3 -> "2.1"
    (C3, "I choose option B, since 3.5 is larger.", "B", True),  # GPT "B"
    (YN, "\\boxed{no}", "no", True),  # GPT "no"; NEA: MS: "No" at distance 1, "Yes" at 3
    (YN, "<think>Compare the bars.</think><answer>\\boxed{A}</answer>", "A", False),  # GPT "A"; NEA -> "Yes" != "No"
    (DEG, "\\boxed{45^\\circ}", "45°", True),  # GPT "45°"; NEA: MS -> "45°"
    (POP, "\\boxed{The population will increase}", "The population will increase", True),  # GPT copies the option; MS -> itself
    (POP, "\\boxed{the population will decrease}", "the population will decrease", False),  # MS: "...decrease" at distance 1
    # -- integer ---------------------------------------------------------------------------
    (INT, "14", "14", True),  # RULE: int("14") -> "14"; NEA: str(int(float("14")))
    (INT, "14.9", "14.9", True),  # RULE int() fails, GPT "14.9"; NEA: int(float) truncates -> "14"
    (INT, "\\boxed{14 apples}", "14", True),  # GPT "14"
    (INT, "\\boxed{1,400}", "1400", False),  # GPT "1400" (no separator); NEA "1400" != "14"
    (INT, "The answer is 14.", "14", True),  # GPT "14"
    (INT, "There are 5 red and 9 blue balls, so 14 in total.", "14", True),  # GPT "14"
    (INT, "\\boxed{14.0}", "14.0", True),  # GPT "14.0"; NEA -> "14"
    (INT, "\\boxed{3} first, then corrected: \\boxed{14}", "14", True),  # GPT takes the final answer "14"
    (INT, "I cannot tell from the image.", "", False),  # GPT gives no number; NEA: int(float("")) raises -> None
    (NEG, "\\boxed{-4}", "-4", True),  # GPT "-4"; NEA "-4"
    (NEG, "\\boxed{4}", "4", False),  # NEA "4" != "-4"
    # -- float -----------------------------------------------------------------------------
    (F1, "\\boxed{1.25}", "1.25", True),  # GPT "1.25"; NEA: round(1.25, 1) == 1.2 (binary 1.25 rounds half to even)
    (F1, "\\boxed{1.3}", "1.3", False),  # NEA "1.3" != "1.2"
    (F2, "\\boxed{1.4567}", "1.4567", True),  # NEA: round(1.4567, 2) -> "1.46"
    (F2, "\\boxed{1.47}", "1.47", False),  # NEA "1.47"
    (F2, "The slope is about 1.455 so the answer is 1.46", "1.46", True),  # GPT "1.46"
    (HALF, "\\boxed{\\frac{1}{2}}", "0.5", True),  # GPT gives the decimal the hint asks for; NEA "0.5"
    (THREE, "\\boxed{3}", "3", True),  # GPT "3"; NEA: str(round(3.0, 1)) == "3.0"
    (MONEY, "1.45", "1.45", True),  # RULE: str(float("1.45")); NEA "1.45"
    (MONEY, "Luca needs \\boxed{\\$1.45}", "1.45", True),  # GPT "1.45" (demo example 3)
    (NOPREC, "\\boxed{2.5}", "2.5", False),  # NEA: int(None) raises TypeError -> None: no precision, never right
    # -- list ------------------------------------------------------------------------------
    (LIST, "\\boxed{[2014, 2016]}", "[2014, 2016]", True),  # GPT copies the list; NEA str() -> equal
    (LIST, "The line peaks between 2014 and 2016.", "[2014, 2016]", True),  # GPT "[2014, 2016]" (demo example 4)
    (LIST, "\\boxed{[2016, 2014]}", "[2016, 2014]", False),  # NEA: strings differ
]


def _item(fields: dict) -> EvalItem:
    meta = {k: fields[k] for k in ("question_type", "answer_type", "precision")}
    return EvalItem(key={"pid": "g"}, question="q", options=list(fields["choices"] or []), answer=fields["answer"], meta=meta)


@pytest.mark.parametrize("fields,response,extraction,verdict", CASES, ids=[f"{i}:{c[1][:30]}" for i, c in enumerate(CASES)])
def test_official_verdict(fields, response, extraction, verdict):
    item = _item(fields)
    assert mathvista.score(item, response)["correct"] is verdict
    # the official normalisation of the official extraction gives the same verdict
    pred = mathvista.normalize(extraction, item)
    assert (pred is not None and pred == item.answer) is verdict


@pytest.mark.parametrize("fields,extraction,prediction", [
    (C3, "(b) something", "3.5"), (C3, "A", "2.1"), (C3, "a", "2.1"), (C3, "", "2.1"), (C3, "  B ", "3.5"),
    (INT, "7.9", "7"), (INT, "-0.5", "0"), (INT, "1e3", "1000"), (INT, "1,000", None), (INT, "inf", None), (INT, "", None),
    (F2, "2", "2.0"), (F2, "0.125", "0.12"), (F1, "nan", "nan"), (F2, "1.2.3", None), (LIST, "[1,2]", "[1,2]"),
])
def test_normalize_extracted_answer(fields, extraction, prediction):
    """NEA by hand: "(b)" is upper-cased to B; a lower-case "a" is no letter and goes to MS;
    int(float()) truncates; float() takes "1e3", not "1,000"; rounding is Python's round."""
    assert mathvista.normalize(extraction, _item(fields)) == prediction


def test_departures_from_gpt_extraction():
    """Responses GPT-4 would read and our rules do not (module docstring, departure 1)."""
    assert not mathvista.score(_item(INT), "The total is fourteen.")["correct"]  # GPT: "14"
    assert not mathvista.score(_item(INT), "<think>So 14.</think><answer></answer>")["correct"]  # GPT reads the reasoning
    assert mathvista.score(_item(INT), "<think>So 3.</think><answer>\\boxed{14}</answer>")["correct"]


def test_edit_distance_is_levenshtein():
    assert mathvista.edit_distance("kitten", "sitting") == 3
    assert mathvista.edit_distance("", "abc") == 3 and mathvista.edit_distance("abc", "") == 3
    assert mathvista.edit_distance("flaw", "lawn") == 2
