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
    x, y = [n for n in ("red cube", "blue sphere", "green cone", "pink cylinder") if n not in (a, b)][:2]  # neither asked about
    listing = f"1. The {x} is in column 1, row 2.\n2. The {y} is in column 3, row 3.\n"
    response = f"<think>\nI see 2 objects, from left to right:\n{listing}A: The {b} is in column 1, row 1.\nB: The {x} is in column 1, row 3.\n</think>"
    c = probe.score_row(sample, response, False)
    assert a != b and c["first"] == 0 and c["looked_up"] == 0
    assert (c["own_reading"], c["own_total"]) == (0, 1)  # x is listed in row 2, looked up in row 3; b is not listed
    assert c["names_one"] == 0  # no answer at all


def test_a_run_folder_is_read_task_by_task(tmp_path, shard_root, capsys):
    """probe_run / main on a run folder: its build's test shards and its held-out answers, matched by id; answers
    that are the references score every step, answers that box the other letter do not; tasks with no answers
    are left out, and a run without the held-out file says which step to run."""
    import json

    from m2r.data.shards import sample_stream, shard_urls

    run = tmp_path / "run"
    (run / "eval" / "heldout_sft").mkdir(parents=True)
    (run / "build").symlink_to(shard_root)
    rows = []
    for task, boxed_wrong in (("spatial/depth", False), ("spatial/relation", True)):
        for sample, _ in sample_stream(shard_urls(shard_root, "test", [task]), shuffle_shards=False):
            response = sample.cot
            if boxed_wrong:
                response = response.replace(f"\\boxed{{{sample.answer}}}", "\\boxed{Z}")
            rows.append({"id": sample.id, "response": response, "correct": not boxed_wrong})
    (run / "eval" / "heldout_sft" / "samples.jsonl").write_text("\n".join(map(json.dumps, rows)))
    out = probe.probe_run(run, "heldout_sft")
    assert set(out) == {"spatial/depth", "spatial/relation"}
    depth, relation = out["spatial/depth"], out["spatial/relation"]
    assert depth["rows"] >= 2 and all(depth[k] == depth["rows"] for k in ("correct", "first", "looked_up", "names_one", "named_right", "letter_named"))
    assert relation["rows"] >= 2 and relation["correct"] == 0 and relation["letter_named"] == 0 and relation["looked_up"] == relation["rows"]
    assert probe.main([str(run)]) == 0
    printed = capsys.readouterr().out
    assert f"| run | depth | {depth['rows']} | {depth['rows']} |" in printed and "rel_distance" not in printed
    import pytest

    with pytest.raises(SystemExit, match="heldout_grpo"):
        probe.main([str(run), "--split", "heldout_grpo"])
