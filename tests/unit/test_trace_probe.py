"""benchmarks/trace_probe.py: its step-by-step counts on generated samples and hand-edited responses."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from m2r.data.tasks import generate

SPEC = importlib.util.spec_from_file_location("trace_probe", Path(__file__).parents[2] / "benchmarks" / "trace_probe.py")
probe = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(probe)


def test_the_reference_trace_scores_every_step_right_and_a_swapped_letter_does_not():
    for task in probe.TASKS:
        sample, _ = generate(task, 0, seed=3, split="test", image_size=168, mc_ratio=0.5)
        c = probe.score_row(sample, sample.cot, True)
        assert (c["rows"], c["correct"], c["first"], c["looked_up"], c["names_one"], c["named_right"], c["letter_named"]) == (1, 1, 1, 1, 1, 1, 1), (task, c)
        assert c["own_reading"] == c["own_total"] >= 2  # the look-ups copy the listing's lines
        if task == "spatial/depth":  # the answer names the nearer object: box the other letter
            other = "B" if sample.answer == "A" else "A"
            wrong = sample.cot.replace(f"\\boxed{{{sample.answer}}}", f"\\boxed{{{other}}}")
            c = probe.score_row(sample, wrong, False)
            assert (c["names_one"], c["named_right"], c["letter_named"], c["correct"]) == (1, 1, 0, 0)


def test_look_ups_of_other_objects_and_readings_that_differ_from_the_listing_are_counted():
    sample, _ = generate("spatial/depth", 1, seed=3, split="test", image_size=168, mc_ratio=0.5)
    a, b = probe.named_objects(sample)
    listing = "1. The red cube is in column 1, row 2.\n2. The blue sphere is in column 3, row 3.\n"
    response = f"<think>\nI see 2 objects, from left to right:\n{listing}A: The {b} is in column 1, row 1.\nB: The red cube is in column 1, row 3.\n</think>"
    c = probe.score_row(sample, response, False)
    assert c["first"] == int(b == a) and c["looked_up"] == 0
    assert (c["own_reading"], c["own_total"]) == (0, 1)  # the red cube is listed in row 2, looked up in row 3
    assert c["names_one"] == 0  # no answer at all
