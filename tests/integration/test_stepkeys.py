"""Step outputs keyed by content (m2r.stepkeys): the same key keeps an output (resume, skip), another
key or an output of unknown origin is removed before the step runs, and keys chain downstream."""

from __future__ import annotations

import json
import logging

from conftest import compose
from m2r import stepkeys


def _fake_output(folder, name="last.ckpt"):
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    (folder / "checkpoints" / name).write_text("x")


def test_same_key_keeps_the_output_another_removes_it(tmp_path, caplog):
    cfg = compose(["sft.module.lr=1e-5"], tmp_path, tmp_path)
    key = stepkeys.prepare(cfg, "sft")
    _fake_output(tmp_path / "sft")  # a crash mid-SFT left a checkpoint
    assert stepkeys.prepare(compose(["sft.module.lr=1e-5", "trainer.enable_progress_bar=false", "logger=tensorboard"], tmp_path, tmp_path), "sft") == key
    assert (tmp_path / "sft" / "checkpoints" / "last.ckpt").exists()  # same settings that shape SFT: resumable
    with caplog.at_level(logging.WARNING, logger="m2r.stepkeys"):
        other = stepkeys.prepare(compose(["sft.module.lr=2e-5"], tmp_path, tmp_path), "sft")
    assert other != key and not (tmp_path / "sft" / "checkpoints").exists()  # never resumed under another learning rate
    assert "sft.module.lr: 1e-05 -> 2e-05" in caplog.text
    assert json.loads((tmp_path / "sft" / "key.json").read_text())["key"] == other


def test_memory_and_log_knobs_keep_the_output_quality_switch_does_not(tmp_path):
    base = stepkeys.step_key(compose([], tmp_path, tmp_path), "grpo")[0]
    for knob in ["grpo.module.micro_batch_size=2", "grpo.module.logprob_chunk=64", "grpo.module.rollout_log_rows=8",
                 "model.gradient_checkpointing=true", "reward.expression.workers=4"]:
        assert stepkeys.step_key(compose([knob], tmp_path, tmp_path), "grpo")[0] == base, knob  # an OOM fix keeps the checkpoints
    assert stepkeys.step_key(compose(["grpo.module.lr=3e-4"], tmp_path, tmp_path), "grpo")[0] != base
    sft = stepkeys.step_key(compose([], tmp_path, tmp_path), "sft")[0]
    assert stepkeys.step_key(compose(["quality.enabled=false"], tmp_path, tmp_path), "sft")[0] != sft  # trains on other traces


def test_tiny_init_scale_keys_only_the_tiny_model(tmp_path):
    def key(*over):
        return stepkeys.step_key(compose(list(over), tmp_path, tmp_path), "sft")[0]

    assert key("model.tiny.initializer_range=0.02") != key()  # the tiny model's weights depend on it (default 0.08)
    assert stepkeys.step_key(compose([], tmp_path, tmp_path), "sft")[1]["model"]["tiny"]["initializer_range"] == 0.08
    assert "initializer_range" not in stepkeys.step_key(compose(["model.tiny.initializer_range=0.02"], tmp_path, tmp_path), "sft")[1]["model"]["tiny"]  # 0.02: keys from before the field hold
    real = ["model=qwen2_5_vl_3b_random"]
    assert key(*real, "model.tiny.initializer_range=0.08") == key(*real)  # a 3B of random weights does not: its steps are kept
    assert "initializer_range" not in stepkeys.step_key(compose(real, tmp_path, tmp_path), "sft")[1]["model"]["tiny"]


def test_sft_refuses_filtered_traces_made_with_other_quality_settings(tmp_path):
    """stage=sft does not run the filter: the quality/ output it would train on must be the one its settings make."""
    import pytest

    from m2r.pipeline import step_sft

    stepkeys.prepare(compose(["quality.threshold=0.8"], tmp_path, tmp_path), "quality")
    (tmp_path / "quality" / "train").mkdir(parents=True)
    (tmp_path / "quality" / "train" / "manifest.json").write_text("{}")  # the filter's output, keyed with threshold 0.8
    (tmp_path / "quality" / "summary.json").write_text("{}")  # written last: the filter finished
    with pytest.raises(ValueError, match="quality-filtered traces .* other quality"):
        step_sft(compose(["stage=sft", "quality.threshold=0.2"], tmp_path, tmp_path))


def test_a_key_records_only_the_inputs_the_step_reads_and_only_once_complete(tmp_path):
    """An upstream output is part of a step's key only when the step would read it and it is finished:
    SFT that trained on every trace (no filtered traces yet) is redone once the filter finishes."""
    cfg = compose([], tmp_path, tmp_path)
    stepkeys.prepare(cfg, "quality")  # the filter started (its key.json is written first) but has not finished
    before = stepkeys.step_key(cfg, "sft")
    assert before[1]["inputs"]["quality"] is None
    (tmp_path / "quality" / "train").mkdir(parents=True)
    (tmp_path / "quality" / "train" / "manifest.json").write_text("{}")
    (tmp_path / "quality" / "summary.json").write_text("{}")
    after = stepkeys.step_key(cfg, "sft")
    assert after[1]["inputs"]["quality"] is not None and after[0] != before[0]  # the unfiltered SFT is not kept
    # quality.enabled=false: SFT reads every trace, so the filter's settings do not key it
    off = [stepkeys.step_key(compose(["quality.enabled=false", f"quality.threshold={t}"], tmp_path, tmp_path), "sft")[0] for t in (0.2, 0.8)]
    assert off[0] == off[1]
    # GRPO from a given checkpoint: keyed by that folder's files, not by this run's SFT
    init = tmp_path / "ckpt"
    init.mkdir()
    (init / "config.json").write_text("{}")
    a = stepkeys.step_key(compose([f"grpo.init={init}"], tmp_path, tmp_path), "grpo")
    assert "sft" not in a[1]["inputs"] and a[1]["inputs"]["grpo.init"] is not None
    (init / "model.safetensors").write_bytes(b"new weights")  # the checkpoint replaced in place
    assert stepkeys.step_key(compose([f"grpo.init={init}"], tmp_path, tmp_path), "grpo")[0] != a[0]
    # the number of ranks sets the global batch and the data split
    for step in ("sft", "grpo"):
        one = stepkeys.step_key(cfg, step)[0]
        assert stepkeys.step_key(compose(["trainer.num_nodes=2"], tmp_path, tmp_path), step)[0] != one
        assert stepkeys.step_key(compose(["trainer.devices=2", "strategy=ddp"], tmp_path, tmp_path), step)[0] != one
        assert stepkeys.step_key(compose(["trainer.devices=[0,1]", "strategy=ddp"], tmp_path, tmp_path), step)[0] == \
            stepkeys.step_key(compose(["trainer.devices=2", "strategy=ddp"], tmp_path, tmp_path), step)[0]  # the same two ranks
    assert stepkeys.step_key(compose(["trainer.gradient_clip_val=0"], tmp_path, tmp_path), "sft")[0] == \
        stepkeys.step_key(compose(["trainer.gradient_clip_val=null"], tmp_path, tmp_path), "sft")[0]  # both: no clipping


def test_output_without_a_key_is_redone(tmp_path, caplog):
    cfg = compose([], tmp_path, tmp_path)
    _fake_output(tmp_path / "grpo")
    (tmp_path / "rollouts").mkdir()
    (tmp_path / "rollouts" / "step10.jsonl").write_text("{}\n")
    with caplog.at_level(logging.WARNING, logger="m2r.stepkeys"):
        stepkeys.prepare(cfg, "grpo")
    assert "has no key.json" in caplog.text
    assert not (tmp_path / "grpo" / "checkpoints").exists() and not (tmp_path / "rollouts").exists()


def test_keys_chain_from_the_data_down(tmp_path, caplog):
    cfg = compose([], tmp_path, tmp_path)
    (tmp_path / "build" / "train").mkdir(parents=True)
    (tmp_path / "build" / "train" / "manifest.json").write_text('{"count": 3, "build_key": "a"}')
    def run(cfg, step):  # the step prepared, then finished (what it writes last)
        key = stepkeys.prepare(cfg, step)
        for f in stepkeys.COMPLETE.get(step, []):
            (stepkeys.step_dirs(cfg, step)[0] / f).parent.mkdir(parents=True, exist_ok=True)
            (stepkeys.step_dirs(cfg, step)[0] / f).write_text("{}")
        return key

    keys = {s: run(cfg, s) for s in ("quality", "sft", "difficulty", "curriculum", "grpo", "heldout_grpo")}
    assert keys == {s: run(cfg, s) for s in keys}  # stable
    (tmp_path / "build" / "train" / "manifest.json").write_text('{"count": 4, "build_key": "b"}')  # a fixed row, rebuilt
    with caplog.at_level(logging.WARNING, logger="m2r.stepkeys"):
        new = {s: run(cfg, s) for s in keys}
    assert all(new[s] != keys[s] for s in keys)
    assert "build (its output changed)" in caplog.text
    # A change that only GRPO reads leaves everything upstream as it is.
    cfg2 = compose(["algo.G=8"], tmp_path, tmp_path)
    again = {s: run(cfg2, s) for s in keys}
    assert [s for s in keys if again[s] != new[s]] == ["grpo", "heldout_grpo"]


_RACE_CHILD = r'''
import json, sys, time
from pathlib import Path

from hydra import compose, initialize_config_dir

import m2r
from m2r import pipeline, stepkeys

conf, run_dir, rank = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
with initialize_config_dir(config_dir=conf, version_base="1.3"):
    cfg = compose(config_name="run", overrides=[f"paths.run_dir={run_dir}", f"paths.cache_dir={run_dir}/cache", "stage=sft",
                                                 "stage.steps=[sft]", "sft.module.lr=2e-5", "perceive.max_steps=0"])

real_prepare = stepkeys.prepare
def slow_prepare(cfg, step, **kw):  # rank 0 takes its time before it removes the stale output
    time.sleep(3.0)
    return real_prepare(cfg, step, **kw)
stepkeys.prepare = slow_prepare

def fake_sft(cfg):  # what a rank finds in the step's folder when it starts the step
    sft = Path(cfg.paths.sft_dir)
    seen = {"stale_ckpt": (sft / "checkpoints" / "last.ckpt").exists(),
            "key": json.loads((sft / "key.json").read_text())["key"] if (sft / "key.json").exists() else None,
            "t": time.time()}
    (run_dir / f"seen{rank}.json").write_text(json.dumps(seen))
    return {"rank": rank}
pipeline.STEPS["sft"] = fake_sft
pipeline.run(cfg)
'''


def test_other_ranks_start_a_step_only_after_rank_zero_removed_its_stale_output(tmp_path):
    """Two processes (RANK 0/1, one run id) run a trainer step whose folder holds a checkpoint from another learning
    rate. Rank 0 removes it before the step (slowly, here); rank 1 must not start the step (and resume from the stale
    checkpoint) until then. Without the ready marker rank 1 starts at once and finds the stale last.ckpt."""
    import os
    import subprocess
    import sys

    from conftest import CONF

    cfg_old = compose(["stage=sft", "sft.module.lr=1e-5"], tmp_path, tmp_path / "cache")
    stepkeys.prepare(cfg_old, "sft")
    _fake_output(tmp_path / "sft")  # a crash of the 1e-5 run left last.ckpt
    script = tmp_path / "child.py"
    script.write_text(_RACE_CHILD)
    env = {**os.environ, "WORLD_SIZE": "2", "M2R_RUN_ID": "race-test", "M2R_RANK_WAIT_S": "60"}
    procs = [subprocess.Popen([sys.executable, str(script), str(CONF), str(tmp_path), str(r)], env={**env, "RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    new_key = json.loads((tmp_path / "sft" / "key.json").read_text())["key"]
    for r in (0, 1):
        seen = json.loads((tmp_path / f"seen{r}.json").read_text())
        assert not seen["stale_ckpt"], f"rank {r} started the step with the stale checkpoint still there"
        assert seen["key"] == new_key, f"rank {r} started the step before rank 0 keyed the folder"


def test_a_code_version_bump_redoes_only_its_steps(tmp_path, monkeypatch):
    """CODE_VERSION salts the keys of the steps whose earlier outputs a fix made wrong (the rollout steps since the
    prefill fix), and no other step's."""
    cfg = compose([], tmp_path, tmp_path)
    before = {s: stepkeys.step_key(cfg, s)[0] for s in stepkeys.STEP_CONFIG}
    assert stepkeys.step_key(cfg, "grpo")[1]["code"] == 2 and "code" not in stepkeys.step_key(cfg, "sft")[1]
    monkeypatch.setitem(stepkeys.CODE_VERSION, "difficulty", 3)
    after = {s: stepkeys.step_key(cfg, s)[0] for s in stepkeys.STEP_CONFIG}
    assert [s for s in before if before[s] != after[s]] == ["difficulty"]  # downstream steps follow through their inputs' recorded keys, once written
