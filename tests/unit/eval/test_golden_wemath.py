"""Golden cases for We-Math, against the official code of github.com/We-Math/We-Math (commit
a57a0e8), `evaluation/four_dimensional_metrics.py`, copied unchanged into VLMEvalKit's
`vlmeval/dataset/utils/wemath.py`:

- `load_and_process_data`: `processed_answer` = the response after the last "Answer", stripped,
  with every `<`, `>`, `:`, `.` deleted, stripped again; its first character if that is in
  "ABCDEFGH", else None; `joker` (right) = processed_answer == answer. No GPT is involved.
- `calculate_metrics` / `compute_final_scores` / `update_main_results_df`: IK, IG, CM and RM
  (strict and loose) per problem, Score = (525 - 0.5 IG - RM - IK) / 525; `accuracy.py`: S1, S2, S3.

Each per-answer case gives the official `processed_answer` (column `official`) and, where our
scorer departs (departure 1 of the module docstring: M2 reading when the official reading finds
nothing), our letter (column `ours`, marked DEPARTURE). The official column was derived by reading
`load_and_process_data` and confirmed by running a copy of it (outside the repo) on these strings.
The aggregate sets give counts and scores computed by hand from `calculate_metrics` and the Score
formula with 525 replaced by the number of problems in the set (the full testmini has 525), also
confirmed on a copy of the official functions.
"""

from __future__ import annotations

import pytest

from m2r.eval import wemath
from m2r.eval.items import EvalItem

OPTIONS = ["A. 10 cm", "B. 15 cm", "C. 31.4 cm", "D. 62.8 cm.", "E. No correct answer"]  # testmini's option style (trailing "." kept)
SAME = object()  # ours equals the official reading


def m2(body: str) -> str:
    return f"<think>Compare the two lengths.</think><answer>{body}</answer>"


# (ground truth, response, official processed_answer, ours)
CASES = [
    # --- official template, "Answer" present: text after the last "Answer" ---
    ("B", "<Thought process>: <<AB = 15 cm>> <Answer>: <<B>>", "B", SAME),  # split('Answer')[-1] = ">: <<B>>" -> "B"
    ("B", "<Thought process>: <<AB = 10 cm>> <Answer>: <<A>>", "A", SAME),  # wrong letter read
    ("B", "Answer: B", "B", SAME),  # plain "Answer: X"
    ("B", "Answer: B.", "B", SAME),  # '.' deleted by [>><<:.]
    ("B", "Answer:B", "B", SAME),  # no space needed
    ("B", "Answer:\n\n  B", "B", SAME),  # strip() removes newlines
    ("C", "Answer: >>C<<", "C", SAME),  # angle brackets deleted anywhere
    ("E", "Answer: E. No correct answer", "E", SAME),  # first character only
    ("D", "Answer: D, because 2 * 31.4 = 62.8", "D", SAME),  # the rest of the tail is ignored
    ("D", "First Answer: A. On checking again, Answer: D", "D", SAME),  # the LAST "Answer" counts
    ("B", "Answer: b", None, SAME),  # lower case is not in "ABCDEFGH"
    ("B", "Answer: I", None, SAME),  # I is outside A-H
    ("B", "Answer: 'B'", None, SAME),  # quote is the first character; our cue reading needs a label too
    ("B", "**Answer**: B", None, SAME),  # tail "**: B" starts with '*'; ours finds no cue either
    ("B", "Answers: B", None, SAME),  # split on "Answer" leaves "s: B" -> 's'
    ("A", "Answer: D, the Answer is not A", None, SAME),  # last "Answer" -> "is not A" -> 'i'; ours: "not A" is no label
    ("B", "<Answer>: <<>>", None, SAME),  # empty tail
    ("B", "Answer: (B)", None, "B"),  # '(' is first -> None; DEPARTURE: cue "Answer:" then label "(B)"
    ("B", "Answer: \\boxed{B}", None, "B"),  # '\' is first -> None; DEPARTURE: boxed letter
    ("B", "Answer: 15 cm", None, "B"),  # '1' is first -> None; DEPARTURE: "15 cm" is option B's text
    # --- no "Answer" (case-sensitive): the whole response is read ---
    ("B", "B", "B", SAME),  # bare letter
    ("B", " B. 15 cm", "B", SAME),  # first character of the stripped response
    ("C", "Because AB = 31.4 cm, I choose C", "B", SAME),  # official quirk kept: "Because" -> 'B'
    ("B", "ANSWER: B", "A", SAME),  # official quirk kept: no "Answer", first character 'A'
    ("C", "the answer is C", None, "C"),  # 't' -> None; DEPARTURE: "answer is" cue
    ("B", "", None, SAME),  # empty response
    ("B", "15", None, SAME),  # a number is no letter, and no option's text
    # --- M2 format: official reads "think..." -> 't' -> None unless "Answer" occurs ---
    ("B", m2("\\boxed{B}"), None, "B"),  # DEPARTURE: boxed letter
    ("C", m2("\\boxed{B}"), None, "B"),  # DEPARTURE: boxed letter, wrong
    ("B", m2("\\boxed{(B)}"), None, "B"),  # DEPARTURE: label in parentheses
    ("B", m2("The length is \\boxed{B. 15 cm}"), None, "B"),  # DEPARTURE: label with its option text
    ("B", m2("\\boxed{\\text{B}}"), None, "B"),  # DEPARTURE: \text{} unwrapped
    ("D", m2("\\boxed{62.8 cm}"), None, "D"),  # DEPARTURE: option text (option D ends with '.')
    ("D", m2("\\boxed{62.8}"), None, None),  # a bare number matches no option text
    ("C", m2("\\boxed{B} or maybe \\boxed{C}"), None, "C"),  # DEPARTURE: the last box
    ("B", m2(""), None, SAME),  # empty <answer></answer> never scores
    ("B", "<think>Answer choices: A is 10 cm.</think><answer>\\boxed{B}</answer>", None, "B"),  # tail " choices..." -> 'c'; DEPARTURE: box
    ("B", "<think>Answer: A? No.</think><answer>\\boxed{B}</answer>", "A", SAME),  # official kept: "Answer" in the reasoning wins
    ("D", m2("<Thought process>: <<2 * 31.4>> <Answer>: <<D>>"), "D", SAME),  # official template inside M2 tags: ">: <<D>></answer>" -> 'D'
]


@pytest.mark.parametrize(("answer", "response", "official", "ours"), CASES)
def test_per_answer(answer, response, official, ours):
    item = EvalItem(key={"ID": "2steps_1", "key": "2steps_1"}, question="How long is AB?", options=OPTIONS, answer=answer)
    assert wemath.official_answer(response) == official
    expected = official if ours is SAME else ours
    got = wemath.score(item, response)
    assert got["extracted"] == expected
    assert got["correct"] == (expected == answer)
    if ours is SAME:  # no departure: our verdict is the official verdict
        assert got["correct"] == (official == answer)
    else:  # a departure only ever turns an official "no answer" into a letter
        assert official is None


def test_enough_cases():
    assert len(CASES) >= 30


def rows2(pid, s1, s2, multi):
    return [(pid, "2steps_1", s1), (pid, "2steps_2", s2), (pid, "2steps_multi", multi)]


def rows3(pid, s1, s2, s3, multi):
    return [(pid, "3steps_1", s1), (pid, "3steps_2", s2), (pid, "3steps_3", s3), (pid, "3steps_multi", multi)]


T, F = True, False
# name, rows, expected counts (IK, IG, CM_strict, CM_loose, RM_strict, RM_loose), Score strict, Score loose, (S1, S2, S3)
AGGREGATE = [
    (
        # one problem per class, two-step: (T,T,T) CM; (T,T,F) IG; (T,F,T) RM strict + CM loose; (F,F,F) IK.
        # strict (4 - 0.5*1 - 1 - 1) / 4 = 0.375; loose (4 - 0.5 - 0 - 1) / 4 = 0.625
        "two_step_each_class", rows2("2steps_1", T, T, T) + rows2("2steps_2", T, T, F) + rows2("2steps_3", T, F, T) + rows2("2steps_4", F, F, F),
        (1, 1, 1, 2, 1, 0), 0.375, 0.625, (5 / 8, 2 / 4, 0.0),
    ),
    (
        # three-step: (TTT,T) CM; (FTT,T) RM strict + CM loose; (FFF,T) RM both; (TTT,F) IG; (TTF,F) IK; (FFF,F) IK.
        # strict (6 - 0.5 - 2 - 2) / 6 = 0.25; loose (6 - 0.5 - 1 - 2) / 6 = 2.5 / 6
        "three_step_each_class", rows3("3steps_1", T, T, T, T) + rows3("3steps_2", F, T, T, T) + rows3("3steps_3", F, F, F, T)
        + rows3("3steps_4", T, T, T, F) + rows3("3steps_5", T, T, F, F) + rows3("3steps_6", F, F, F, F),
        (2, 1, 1, 2, 2, 1), 0.25, 2.5 / 6, (10 / 18, 0.0, 3 / 6),
    ),
    (
        # mixed, rows interleaved: 2-step (F,T,T) RM strict / CM loose, (T,T,T) CM; 3-step (TTT,F) IG, (TFF,T) RM strict / CM loose.
        # strict (4 - 0.5 - 2 - 0) / 4 = 0.375; loose (4 - 0.5 - 0 - 0) / 4 = 0.875
        "mixed_interleaved", [r for pair in zip(rows2("2steps_7", F, T, T) + rows2("2steps_8", T, T, T), rows3("3steps_7", T, T, T, F) + rows3("3steps_8", T, F, F, T)[:2])
                              for r in pair] + rows3("3steps_8", T, F, F, T)[2:],
        (0, 1, 1, 3, 2, 0), 0.375, 0.875, (7 / 10, 2 / 2, 1 / 2),
    ),
    (
        # everything wrong: all IK, both scores 0; RM / (CM + RM) = 0 / 0 -> 0 here (official: ZeroDivisionError)
        "all_wrong", rows2("2steps_1", F, F, F) + rows3("3steps_1", F, F, F, F), (2, 0, 0, 0, 0, 0), 0.0, 0.0, (0.0, 0.0, 0.0),
    ),
    (
        # composite right, all one-steps wrong: RM in both; strict = loose = (2 - 0 - 2 - 0) / 2 = 0
        "rote_memorisation_only", rows2("2steps_1", F, F, T) + rows3("3steps_1", F, F, F, T), (0, 0, 0, 0, 2, 2), 0.0, 0.0, (0.0, 1.0, 1.0),
    ),
    (
        # generalisation gap only: IG; strict = loose = (2 - 0.5*2) / 2 = 0.5
        "inadequate_generalisation_only", rows2("2steps_1", T, T, F) + rows3("3steps_1", T, T, T, F), (0, 2, 0, 0, 0, 0), 0.5, 0.5, (1.0, 0.0, 0.0),
    ),
]


@pytest.mark.parametrize(("name", "rows", "counts", "strict", "loose", "steps"), AGGREGATE, ids=[a[0] for a in AGGREGATE])
def test_four_dimensional_sets(name, rows, counts, strict, loose, steps):
    m = wemath.four_dimensional(rows)
    ik, ig, cm_s, cm_l, rm_s, rm_l = counts
    n = len({pid for pid, _, _ in rows})
    assert (m["IK_count"], m["IG_count"], m["CM_strict_count"], m["CM_loose_count"], m["RM_strict_count"], m["RM_loose_count"]) == counts
    assert m["n_problems"] == n
    assert m["score_strict"] == pytest.approx(strict) and m["score_loose"] == pytest.approx(loose)
    # the official formula, literally: (N - 0.5 IG - RM - IK) / N
    assert m["score_strict"] == pytest.approx((n - 0.5 * ig - rm_s - ik) / n) and m["score_loose"] == pytest.approx((n - 0.5 * ig - rm_l - ik) / n)
    assert m["IK"] == pytest.approx(ik / n) and m["IG"] == pytest.approx(ig / n) and m["CM_strict"] == pytest.approx(cm_s / n) and m["CM_loose"] == pytest.approx(cm_l / n)
    assert m["RM_strict"] == pytest.approx(rm_s / (cm_s + rm_s) if cm_s + rm_s else 0.0)
    assert m["RM_loose"] == pytest.approx(rm_l / (cm_l + rm_l) if cm_l + rm_l else 0.0)
    assert (m["S1"], m["S2"], m["S3"]) == pytest.approx(steps)


def test_official_denominator_525():
    """With n_problems=525 (the official constant) the rates and scores divide by 525: the
    two-step set above scores (1 + 0.5) / 525 strict."""
    m = wemath.four_dimensional(AGGREGATE[0][1], n_problems=525)
    assert m["score_strict"] == pytest.approx(1.5 / 525) and m["IK"] == pytest.approx(1 / 525)
    assert m["RM_strict"] == pytest.approx(0.5)  # RM / (CM + RM) does not depend on N


def test_missing_rows_raise():
    with pytest.raises(ValueError, match="2steps_1 has rows"):
        wemath.four_dimensional(rows2("2steps_1", T, T, T)[:2])
    with pytest.raises(ValueError, match="3steps_1 has rows"):
        wemath.four_dimensional(rows3("3steps_1", T, T, T, T)[1:])


def test_aggregate_end_to_end_from_responses():
    """Responses through `score` then `aggregate`: problem 1 (2-step) answered right everywhere in
    the official template -> CM; problem 2 (3-step) M2 boxes, step 2 wrong, composite right ->
    RM strict / CM loose. Strict (2 - 1) / 2 = 0.5, loose 2 / 2 = 1.0."""
    spec = [("2steps_1", "2steps_1", "A", "<Answer>: <<A>>"), ("2steps_1", "2steps_2", "B", "<Answer>: <<B>>"), ("2steps_1", "2steps_multi", "C", "Answer: C"),
            ("3steps_1", "3steps_1", "A", m2("\\boxed{A}")), ("3steps_1", "3steps_2", "B", m2("\\boxed{C}")), ("3steps_1", "3steps_3", "D", m2("\\boxed{D}")),
            ("3steps_1", "3steps_multi", "B", m2("\\boxed{B. 15 cm}"))]
    items = [EvalItem(key={"ID": pid, "key": key}, question="q", options=OPTIONS, answer=ans) for pid, key, ans, _ in spec]
    scores = [float(wemath.score(it, r)["correct"]) for it, (*_, r) in zip(items, spec)]
    assert scores == [1, 1, 1, 1, 0, 1, 1]
    out = wemath.aggregate(items, scores)
    fd = out["four_dimensional"]
    assert out["score"] == fd["score_strict"] == pytest.approx(0.5) and fd["score_loose"] == pytest.approx(1.0)
    assert (fd["CM_strict_count"], fd["RM_strict_count"], fd["CM_loose_count"], fd["RM_loose_count"]) == (1, 1, 2, 0)
    assert out["accuracy"] == pytest.approx(6 / 7) and fd["S1"] == pytest.approx(4 / 5) and fd["S2"] == fd["S3"] == 1.0


def test_split_options_irregular_rows():
    # testmini rows without ';', with a full-width dot, with a skipped letter
    assert wemath.split_options("A. 45° B. 60° ;C. 120°; D. No correct answer") == ["A. 45°", "B. 60°", "C. 120°", "D. No correct answer"]
    assert wemath.split_options("A. ①;B．②;C. ③; D. Cannot be determined") == ["A. ①", "B．②", "C. ③", "D. Cannot be determined"]
    assert wemath.split_options("A. Yes;B. No.; F. No correct answer") == ["A. Yes", "B. No.", "F. No correct answer"]
    assert wemath.split_options("A. Equal; B. twice BE;G.; C. half") == ["A. Equal", "B. twice BE;G.", "C. half"]
