"""The recipe end to end: every step in one run dir, the report, skip-if-done, a SIGKILLed GRPO
run resumed with every curriculum sample consumed exactly once, curriculum/mix choices."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import m2r
from conftest import FAST, N_TASKS, ROOT, compose
from m2r.data.curriculum import rank_streams, read_batches
from m2r.data.shards import read_manifest

pytestmark = pytest.mark.slow


def test_pipeline_runs_every_step_writes_report_and_skips_when_done(tmp_path, cache_dir):
    overrides = [*FAST, "grpo.max_steps=3", "data.train_per_task=6", "data.rl_per_task=4", "perceive.max_steps=2"]
    results = m2r.run(compose(overrides, tmp_path, cache_dir))
    assert list(results) == ["build", "quality", "perceive", "sft", "difficulty", "curriculum", "heldout_sft", "grpo", "heldout_grpo", "report"]
    q = results["quality"]
    noisy = {k: v for k, v in q["by_noise"].items() if k != "clean"}
    assert q["kept"] + q["dropped"] == q["in"] == 6 * N_TASKS
    assert all(v["dropped"] == v["n"] for v in noisy.values()) and q["by_noise"]["clean"]["dropped"] == 0
    assert read_manifest(tmp_path / "quality", "train")["count"] == q["kept"]
    assert results["difficulty"]["in_file"] == 4 * N_TASKS
    assert results["grpo"]["steps"] == 3
    for which in ("sft", "grpo"):
        m = results[f"heldout_{which}"]
        assert len([k for k in m if k.startswith("task/")]) == N_TASKS and 0.0 <= m["overall"] <= 1.0
    report = (tmp_path / "report.md").read_text()
    assert results["perceive"]["steps"] == 2 and results["perceive"]["readings"] > 0 and "SFT starts from its export" in report
    assert json.loads((tmp_path / "sft" / "key.json").read_text())["config"]["inputs"]["perceive"] == json.loads((tmp_path / "perceive" / "key.json").read_text())["key"]
    for section in ("Wall time per step", "Quality filter", "Perception warm-up", "The look test", "Difficulty and curriculum", "Held-out accuracy per task", "after RL", "| task | blind | after SFT |"):
        assert section in report
    blind = results["heldout_sft"]["blind/spatial/relation"]
    assert f"| spatial/relation | {100 * blind:.1f} | {100 * results['heldout_sft']['task/spatial/relation']:.1f} |" in report
    assert sorted(p.name for p in (tmp_path / "plots").glob("*.png")) == sorted(
        ["reward_per_task.png", "batch_difficulty.png", "beta_kl.png", "adv_weights.png", "heldout_accuracy.png"])
    # The same command again finds every output complete and redoes nothing.
    t0 = time.perf_counter()
    again = m2r.run(compose(overrides, tmp_path, cache_dir))
    assert again["grpo"] == results["grpo"] and again["heldout_grpo"] == results["heldout_grpo"]
    assert time.perf_counter() - t0 < 30
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert len(timings) == 2 and set(timings[1]["steps"]) == set(results)

    # Outputs are keyed by what determines them: a changed GRPO setting redoes GRPO and what reads it, nothing upstream.
    sft_summary, difficulty = (tmp_path / "sft" / "summary.json").read_text(), (tmp_path / "score" / "difficulty.jsonl").read_text()
    hf_mtime = (tmp_path / "sft" / "hf" / "COMPLETE").stat().st_mtime_ns
    written = {p: (tmp_path / p).stat().st_mtime_ns for p in ("grpo/summary.json", "eval/heldout_grpo/metrics.json")}
    changed = m2r.run(compose([*overrides, "grpo.module.lr=3e-4"], tmp_path, cache_dir))
    assert changed["sft"] == results["sft"] and (tmp_path / "sft" / "hf" / "COMPLETE").stat().st_mtime_ns == hf_mtime
    assert (tmp_path / "score" / "difficulty.jsonl").read_text() == difficulty and changed["curriculum"].get("skipped")
    # GRPO trained again with the new setting, and its held-out evaluation was redone (both files rewritten; the
    # `seconds` they report are rounded to 0.1 s and may well be equal).
    assert "seconds" in changed["grpo"] and all((tmp_path / p).stat().st_mtime_ns != t for p, t in written.items())
    assert json.loads((tmp_path / "grpo" / "key.json").read_text())["config"]["grpo"]["module"]["lr"] == 3e-4
    assert (tmp_path / "sft" / "summary.json").read_text() == sft_summary
    # A changed quality threshold redoes the filter and everything below it: SFT, scoring, curriculum, GRPO.
    redo = m2r.run(compose([*overrides, "grpo.module.lr=3e-4", "quality.threshold=0.5"], tmp_path, cache_dir))
    assert redo["quality"]["kept"] >= results["quality"]["kept"]
    assert (tmp_path / "sft" / "hf" / "COMPLETE").stat().st_mtime_ns != hf_mtime
    keys = {s: json.loads((tmp_path / d / "key.json").read_text()) for s, d in (("sft", "sft"), ("difficulty", "score"), ("grpo", "grpo"))}
    assert keys["sft"]["config"]["inputs"]["quality"] == json.loads((tmp_path / "quality" / "key.json").read_text())["key"]
    assert keys["difficulty"]["config"]["inputs"]["sft"] == keys["sft"]["key"] and keys["grpo"]["config"]["inputs"]["sft"] == keys["sft"]["key"]


def _grpo_cmd(run_dir: Path, steps: int) -> list[str]:
    return [sys.executable, "run.py", "stage=grpo", "grpo.init=scratch", f"paths.run_dir={run_dir}", f"hydra.run.dir={run_dir}", "data.train_per_task=1", "data.val_per_task=1",
            "data.rl_per_task=24", "data.test_per_task=1", "data.samples_per_shard=4", "data.tasks=[spatial/count,spatial/abs_distance,general/chart]",
            f"grpo.max_steps={steps}", "callbacks.checkpoint.every_n_train_steps=2", "grpo.module.max_new_tokens=24", "algo.G=2", "grpo.prompts_per_step=3",
            "trainer.enable_progress_bar=false", "logger=csv"]


def test_sigkill_during_grpo_then_resume_consumes_each_sample_once(tmp_path, cache_dir, processor):
    from m2r.config import DataConfig
    from m2r.data.build import build_data
    from m2r.data.curriculum import ShardReader, write_curriculum
    from m2r.data.shards import sample_stream, shard_urls

    run_dir = tmp_path / "run"
    build = build_data(DataConfig(tasks=["spatial/count", "spatial/abs_distance", "general/chart"], train_per_task=1, val_per_task=1, rl_per_task=24,
                                  test_per_task=1, samples_per_shard=4), run_dir / "build", seed=0)
    diffs = {s.id: (i % 7 + 1) / 8 for i, (s, _) in enumerate(sample_stream(shard_urls(build, "rl"), shuffle_shards=False))}
    write_curriculum(build, "rl", diffs, run_dir / "curriculum", samples_per_shard=4)
    env = {**os.environ, "M2R_NO_PROGRESS": "1", "M2R_CACHE_DIR": str(cache_dir)}
    steps = 14
    proc = subprocess.Popen(_grpo_cmd(run_dir, steps), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    last, batches = run_dir / "grpo" / "checkpoints" / "last.ckpt", run_dir / "grpo" / "batches.jsonl"
    deadline = time.time() + 240
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        lines = batches.read_text().splitlines() if batches.exists() else []
        if last.exists() and len(lines) >= 5:  # checkpoints were written, and a step or more after the latest
            os.killpg(proc.pid, signal.SIGKILL)
            killed_at = len(lines)
            break
        time.sleep(0.05)
    proc.wait()
    assert killed_at is not None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    ckpt_step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert ckpt_step < steps
    part1 = [json.loads(x) for x in batches.read_text().splitlines() if x.strip()]

    again = subprocess.run(_grpo_cmd(run_dir, steps), cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    raw = [json.loads(x) for x in batches.read_text().splitlines() if x.strip()]
    part2 = raw[len(part1):]
    assert part2[0]["step"] == ckpt_step + 1  # the step count continues from the checkpoint
    assert [r["step"] for r in part2] == list(range(ckpt_step + 1, steps + 1))
    # Steps the kill undid are redone on the same samples (the cursor and the RNG came back).
    redone = {r["step"]: r["ids"] for r in part1 if r["step"] > ckpt_step}
    assert all(redone[r["step"]] == r["ids"] for r in part2 if r["step"] in redone)
    # Across both parts, every sample of each task's stream is consumed exactly once, in order, with no gap.
    final = read_batches(batches)
    assert [r["step"] for r in final] == list(range(1, steps + 1))
    streams = rank_streams(run_dir / "curriculum", "rl", 0, 1)
    for task in streams:
        seen = [i for r in final if r["task"] == task for i in r["ids"]]
        order = [k for path, _, _ in streams[task] for k in ShardReader().keys(path)]
        assert len(seen) <= len(order)  # 14 steps x 3 never runs past a stream's end here
        assert seen == order[: len(seen)]
    summary = json.loads((run_dir / "grpo" / "summary.json").read_text())
    assert summary["steps"] == steps


@pytest.mark.parametrize("choice", [
    ["curriculum=ordered", "mix=uniform"],
    ["curriculum=random", "mix=spatial_only"],
    ["curriculum=random", "mix=proportional", "curriculum.end_policy=drop"],
    ["curriculum=ordered", "mix=spatial_heavy"],
])
def test_curriculum_and_mix_choices_run_one_step(choice, tmp_path, cache_dir):
    overrides = [*FAST, *choice, "stage=score", "stage.steps=[build,difficulty,curriculum,grpo]", "grpo.max_steps=1", "data.rl_per_task=4",
                 "grpo.module.max_new_tokens=16", "callbacks=default", "grpo.init=scratch"]
    cfg = compose(overrides, tmp_path, cache_dir)
    results = m2r.run(cfg)
    assert results["grpo"]["steps"] == 1
    m = read_manifest(tmp_path / "curriculum", "rl")
    assert m["curriculum"]["order"] == cfg.curriculum.order
    (row,) = read_batches(tmp_path / "grpo" / "batches.jsonl")
    if cfg.mix.name == "spatial_only":
        assert row["task"].startswith("spatial/")
    for task, entry in m["tasks"].items():
        d = [x for s in entry["shards"] for x in s["difficulty"]]
        if cfg.curriculum.order == "ordered":
            assert d == sorted(d)


def test_recipe_under_ddp_two_cpu_processes(tmp_path, processor):
    """strategy=ddp, 2 gloo processes, the whole recipe: rank 0 alone scores, builds curricula and
    reports while rank 1 waits; both train; each RL prompt is scored once."""
    env = {**os.environ, "M2R_NO_PROGRESS": "1"}
    env.pop("M2R_RUN_ID", None)
    run = subprocess.run(
        [sys.executable, "run.py", "strategy=ddp", "trainer.devices=2", *FAST, "perceive.max_steps=2", "data.rl_per_task=4", "curriculum.samples_per_shard=1",
         "grpo.max_steps=2", "grpo.module.max_new_tokens=16", f"hydra.run.dir={tmp_path}/run", f"shared.dir={tmp_path}/shared"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "run"
    # shared steps (m2r.shared) under 2 ranks: rank 1 trained, scored and evaluated in the folders rank 0 chose
    made = json.loads((out / "shared.json").read_text())
    assert all(made[s]["made"] for s in ("build", "perceive", "sft", "difficulty", "grpo", "heldout_grpo")) and (out / "sft").is_symlink()
    assert (out / "sft").resolve() == (tmp_path / "shared" / "sft" / made["sft"]["key"]).resolve()
    ids = [json.loads(x)["id"] for x in (out / "score" / "difficulty.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 4 * N_TASKS
    assert json.loads((out / "grpo" / "summary.json").read_text())["steps"] == 2 and (out / "report.md").exists()
    assert "rank 1 waits for rank 0 to finish step difficulty" in (out / "train_ddp_process_1.log").read_text()
