"""benchmarks/listing_probe.py: its scores of a free-written listing against the scene's, worked out by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("listing_probe", Path(__file__).parents[2] / "benchmarks" / "listing_probe.py")
probe = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(probe)

REF = ("<think>\nI see 3 objects, from left to right:\n1. The red cube is in column 1, row 2.\n2. The blue sphere is in column 3, row 2.\n"
       "3. The red sphere is in column 4, row 3.\nThe blue sphere is in column 3, row 2.\n</think>")  # a look-up line last: not a listed object


def test_a_looping_listing_loses_the_count_and_keeps_what_it_paired():
    said = ("1. The red cube is in column 1, row 2.\n2. The red cube is in column 2, row 2.\n3. The blue sphere is in column 3, row 1.\n"
            "4. The blue sphere is in column 3, row 1.\nThe red sphere is in column 4, row 3.\n")
    s = probe.score_listing(REF, said)
    # 4 said for 3; names: red cube and blue sphere found once each; pairs left to right: (red, red, col 1=1), (blue, red, 3!=2), (red, blue, 4!=3)
    assert s == {"objects": 3, "said": 4, "count_right": 0, "names_found": 2, "paired": 3, "colour_right": 1, "column_right": 1}


def test_a_right_listing_scores_full_and_the_summary_weighs_objects():
    right = probe.score_listing(REF, REF)
    assert right["count_right"] == 1 and right["names_found"] == right["colour_right"] == right["column_right"] == 3
    empty = probe.score_listing(REF, "<think>\nI see nothing.\n</think>")
    assert empty["said"] == 0 and empty["paired"] == 0 and empty["count_right"] == 0
    total = probe.summarise([right, empty])
    assert total["count_right"] == 0.5 and total["names_found"] == pytest.approx(3 / 6) and total["colour_right"] == 1.0 and total["said"] == 1.5


def test_look_ups_are_scored_against_the_question_the_own_listing_and_the_truth():
    question = "List the objects in the image from left to right, with the column and row of each. Then say where the red sphere and the blue sphere are."
    right = probe.score_lookups(question, REF, REF.replace("The blue sphere is in column 3, row 2.\n</think>", "The red sphere is in column 4, row 3.\nThe blue sphere is in column 3, row 2.\n</think>"))
    assert right == {"asked": 2, "named": 2, "all_named": 1, "listed": 2, "own": 2, "true": 2}
    # the names swapped (the copy failed) and the first copied from a misread own listing
    said = ("1. The red cube is in column 1, row 2.\n2. The blue sphere is in column 2, row 2.\n3. The red sphere is in column 4, row 3.\n"
            "The blue sphere is in column 2, row 2.\nThe red sphere is in column 4, row 1.\n")
    wrong = probe.score_lookups(question, REF, said)
    assert wrong == {"asked": 2, "named": 0, "all_named": 0, "listed": 2, "own": 1, "true": 0}  # own: the blue sphere's line; true: neither in its place
    one = probe.score_lookups("... Then say where the red cube is.", REF, REF)  # REF's look-up names the blue sphere
    assert one == {"asked": 1, "named": 0, "all_named": 0, "listed": 1, "own": 1, "true": 0}
    # v7's labelled look-ups count; a name listed twice matches either line; a name the listing lacks is not "listed"
    twice = ("1. The red sphere is in column 1, row 2.\n2. The red sphere is in column 4, row 3.\n"
             "A: The red sphere is in column 1, row 2.\nB: The blue sphere is in column 3, row 2.\n")
    assert probe.score_lookups(question, REF, twice) == {"asked": 2, "named": 2, "all_named": 1, "listed": 1, "own": 1, "true": 1}


def test_every_generated_locate_trace_scores_full():
    import random

    from m2r.data.perceive import perception_sample

    rng = random.Random(0)
    for _ in range(20):
        sample, _ = perception_sample(rng, 168, (2, 6), locate=1.0)
        s = probe.score_lookups(sample.question, sample.cot, sample.cot)
        assert s["asked"] in (1, 2) and s["named"] == s["own"] == s["true"] == s["asked"] and s["all_named"] == 1, (sample.question, sample.cot)


def test_reading_digits_split_into_the_listing_and_the_look_ups(processor):
    import random
    import re

    from m2r.data.collate import SFTCollator
    from m2r.data.perceive import perception_sample

    rng = random.Random(1)
    items = [perception_sample(rng, 168, (2, 6), locate=1.0) for _ in range(6)]
    labels = SFTCollator(processor, 768)(items)["labels"][:, 1:]
    listing, lookup = probe.reading_parts(labels, processor.tokenizer, [int(s.answer) for s, _ in items])
    for k, (s, _) in enumerate(items):
        looked = probe.LOOKUP.findall(s.cot)
        assert int(listing[k].sum()) == 2 * int(s.answer) and int(lookup[k].sum()) == 2 * len(looked) > 0
        said = [processor.tokenizer.decode(t).strip() for t in labels[k][lookup[k]]]
        assert said == [d for _, where in looked for d in re.findall(r"\d", where)]  # the look-ups' own digits, in order
    assert not (listing & lookup).any()


def test_teacher_forced_scores_every_part_on_a_tiny_model(processor, model_cfg):
    import random

    from m2r.data.perceive import perception_sample
    from m2r.model.load import build_model

    rng = random.Random(2)
    held = [perception_sample(rng, 168, (2, 3), locate=1.0) for _ in range(4)]
    out = probe.teacher_forced(build_model(model_cfg, processor).eval(), processor, held, batch_size=4)
    assert set(out) == {"listing", "lookup", "listing_swapped", "lookup_swapped"} and all(0.0 <= v <= 1.0 for v in out.values())
