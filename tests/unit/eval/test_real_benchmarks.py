"""Scoring on the real MATH-V and We-Math testmini files in ../shared/benchmarks (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from m2r.eval import mathvision, wemath

BENCH = Path(__file__).resolve().parents[3].parent / "shared" / "benchmarks"
pytestmark = pytest.mark.skipif(not (BENCH / "mathvision" / "testmini.jsonl").exists(), reason="../shared/benchmarks not present")


def m2(answer: str) -> str:
    return f"<think>I work it out.</think><answer>The answer is \\boxed{{{answer}}}</answer>"


@pytest.fixture(scope="module")
def mv():
    return mathvision.load(BENCH / "mathvision")


@pytest.fixture(scope="module")
def wm():
    return wemath.load(BENCH / "wemath")


def test_mathvision_ground_truth_scores_100(mv):
    assert len(mv) == 304
    assert all(mathvision.score(it, m2(it.answer))["correct"] for it in mv)
    assert mv[0].open_images()[0].size[0] > 0


def test_mathvision_option_text_scores_as_the_official_code(mv):
    # The official evaluate.py compares the answer with the RAW option text (is_equal on strings,
    # then latex2sympy values): the boxed option text of the right letter counts on 43 of the 112
    # rows with option texts (counted by running the official evaluate/is_equal with latex2sympy2
    # 1.9.1 on "The answer is \boxed{<option text>}"). Degrees, units, texts with spaces and
    # spaced percents never match; fractions, roots, pi and ratios do.
    mc = [it for it in mv if it.options and it.options[ord(it.answer) - 65] not in "ABCDE"]
    verdicts = {it.key["id"]: mathvision.score(it, m2(it.options[ord(it.answer) - 65]))["correct"] for it in mc}
    assert len(mc) == 112 and sum(verdicts.values()) == 43
    assert verdicts["206"] and verdicts["2288"] and verdicts["233"] and verdicts["201"]  # 1/2, 1:4, (2+sqrt 3):1, 2 pi
    assert not (verdicts["183"] or verdicts["2588"] or verdicts["293"] or verdicts["91"])  # 120 degrees, 32%, "less than 10", 12 m


def test_mathvision_fixed_wrong_answer_by_hand(mv):
    # Everyone answers "A": right exactly on the multiple-choice rows whose answer is A, and on
    # free-form rows whose answer is the letter "a" itself (none in testmini). Counted by hand below.
    expected = sum(1 for it in mv if it.answer.strip().lower() == "a") + sum(
        1 for it in mv if it.options and it.answer != "A" and it.options[ord(it.answer) - 65].strip().lower() == "a"
    )
    got = sum(mathvision.score(it, m2("A"))["correct"] for it in mv)
    assert got == expected
    assert got == 44  # grep -c '"answer": "A"' testmini.jsonl -> 44 (44 of 304 = 14.47%)


def test_mathvision_numbers_round_to_two_decimals(mv):
    it = mathvision.EvalItem(key={"id": "x"}, question="q", options=[], answer="2.5")
    assert mathvision.score(it, m2("2.499"))["correct"] and mathvision.score(it, m2("\\frac{5}{2}"))["correct"]
    assert not mathvision.score(it, m2("2.6"))["correct"] and not mathvision.score(it, "")["correct"]


def test_wemath_ground_truth_scores_100_and_metrics(wm):
    assert len(wm) == 1740 and len({it.key["ID"] for it in wm}) == 525
    rows = [(it.key["ID"], it.key["key"], wemath.score(it, m2(it.answer))["correct"]) for it in wm]
    assert all(c for _, _, c in rows)
    m = wemath.four_dimensional(rows)
    assert m["score_strict"] == m["score_loose"] == 1.0 and m["IK"] == m["IG"] == 0.0 and m["CM_strict"] == 1.0


def test_wemath_official_answer_template(wm):
    # every row in the official template is read by the official rule itself, and read right
    for it in wm:
        response = f"<Thought process>: <<...>> <Answer>: <<{it.answer}>>"
        assert wemath.official_answer(response) == it.answer and wemath.score(it, response)["correct"]
    # testmini's options split into one entry per label, even on rows without ';' between them
    assert all(len(it.options) >= 4 and it.options[ord(it.answer) - 65].startswith(it.answer) for it in wm)


def test_wemath_four_dimensions_on_constructed_patterns(wm):
    """Patterns chosen per problem, metrics counted by hand:
    2-step problems (360) cycle through four patterns of (step1, step2, multi):
      (T, T, T) -> CM strict and loose         90 problems
      (T, T, F) -> IG                           90
      (T, F, T) -> RM strict, CM loose          90
      (F, F, T) -> RM strict and loose          90
    3-step problems (165): (F, T, T, F) -> IK   165
    """
    patterns2 = [(True, True, True), (True, True, False), (True, False, True), (False, False, True)]
    problems = sorted({it.key["ID"] for it in wm if it.key["ID"].startswith("2steps")}, key=lambda s: int(s.split("_")[1]))
    assign = {pid: patterns2[i % 4] for i, pid in enumerate(problems)}
    rows = []
    for it in wm:
        pid, key = it.key["ID"], it.key["key"]
        if pid.startswith("2steps"):
            s1, s2, multi = assign[pid]
            ok = {"2steps_1": s1, "2steps_2": s2, "2steps_multi": multi}[key]
        else:
            ok = {"3steps_1": False, "3steps_2": True, "3steps_3": True, "3steps_multi": False}[key]
        rows.append((pid, key, wemath.score(it, m2(it.answer if ok else ("B" if it.answer != "B" else "C")))["correct"]))
    m = wemath.four_dimensional(rows)
    assert (m["CM_strict_count"], m["CM_loose_count"], m["IG_count"], m["RM_strict_count"], m["RM_loose_count"], m["IK_count"]) == (90, 180, 90, 180, 90, 165)
    assert m["score_strict"] == pytest.approx((90 + 45) / 525)  # 0.257143
    assert m["score_loose"] == pytest.approx((180 + 45) / 525)  # 0.428571
    assert m["RM_strict"] == pytest.approx(180 / 270) and m["RM_loose"] == pytest.approx(90 / 270)
    assert m["IK"] == pytest.approx(165 / 525) and m["IG"] == pytest.approx(90 / 525)


def test_extraction_is_total(mv, wm):
    nasty = ["", "a" * 1_000_000, "\\boxed{" * 5000, "<answer></answer>", "\\boxed{10^{10^{10^{10}}}}", None]
    for r in nasty:
        mathvision.score(mv[0], r)
        wemath.score(wm[0], r)


def test_wemath_fixed_answer_a_by_hand(wm):
    """Every row answered "A". By hand from the file (grep -o '"answer": "[A-Z]"' | sort | uniq -c):
    585 of 1740 rows are A. Per problem: CM strict 55, RM strict 98, CM loose 150, RM loose 3,
    IG 7, IK 365 (525 in all), so Score(strict) = (55 + 3.5) / 525 and Score(loose) = (150 + 3.5) / 525."""
    rows = [(it.key["ID"], it.key["key"], wemath.score(it, m2("A"))["correct"]) for it in wm]
    assert sum(c for _, _, c in rows) == 585
    m = wemath.four_dimensional(rows)
    assert (m["CM_strict_count"], m["RM_strict_count"], m["CM_loose_count"], m["RM_loose_count"], m["IG_count"], m["IK_count"]) == (55, 98, 150, 3, 7, 365)
    assert m["score_strict"] == pytest.approx(58.5 / 525) and m["score_loose"] == pytest.approx(153.5 / 525)
