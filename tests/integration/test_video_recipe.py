"""Camera-walk video tasks through the whole recipe on the tiny model: build, SFT on batches mixing video, image and
text-only samples, difficulty scoring, GRPO steps on video prompts, and the held-out report's video rows."""

from __future__ import annotations

import json

import pytest

import m2r
from conftest import FAST, compose

pytestmark = pytest.mark.slow

TASKS = "[spatial/video/obj_count,spatial/video/route_plan,spatial/count,general/word_problem]"


def test_video_tasks_through_sft_grpo_and_the_report(tmp_path, cache_dir):
    overrides = [*FAST, f"data.tasks={TASKS}", "data.train_per_task=4", "data.rl_per_task=4", "data.batch_size=8", "sft.max_steps=3",
                 "grpo.max_steps=4", "mix=uniform", "data.num_frames=4"]
    results = m2r.run(compose(overrides, tmp_path, cache_dir))
    sft = json.loads((tmp_path / "sft" / "history.json").read_text())
    losses = [r["train/loss"] for r in sft if "train/loss" in r]
    assert losses and all(0 < x < 100 for x in losses)  # finite
    # GRPO trained on video prompts: the steps' batches name their task; at least one step drew a video task.
    batches = [json.loads(x) for x in (tmp_path / "grpo" / "batches.jsonl").read_text().splitlines()]
    assert results["grpo"]["steps"] == 4 and any(b["task"].startswith("spatial/video/") for b in batches)
    for which in ("heldout_sft", "heldout_grpo"):
        m = results[which]
        assert {"task/spatial/video/obj_count", "task/spatial/video/route_plan"} <= set(m) and m["video"] is not None
    report = (tmp_path / "report.md").read_text()
    assert "| spatial/video/route_plan |" in report and "| video |" in report
