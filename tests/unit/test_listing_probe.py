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
