"""SFT end to end through the real config: training, export, loading with transformers, resume,
and every shipped experiment for one step."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import m2r
from conftest import CONF, FAST, N_TASKS, ROOT, compose

pytestmark = pytest.mark.slow


def test_sft_learns_exports_and_generates(tmp_path, cache_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from m2r.data.collate import M2_SYSTEM_PROMPT, build_messages
    from m2r.data.tasks import generate

    cfg = compose(["stage=sft", *FAST, "data.train_per_task=8", "sft.max_steps=30", "grpo.max_steps=30", "trainer.val_check_interval=30", "sft.module.lr=3e-3", "sft.module.warmup_steps=3"], tmp_path, cache_dir)
    summary = m2r.run(cfg)["sft"]
    assert summary["steps"] == 30
    assert summary["loss_last_mean"] < summary["loss_first_mean"] - 1.5, summary
    assert (tmp_path / "sft" / "checkpoints" / "last.ckpt").exists()
    metrics = list((tmp_path / "logs" / "sft").rglob("metrics.csv"))
    assert metrics and "train/token_acc" in metrics[0].read_text().splitlines()[0]

    hf = tmp_path / "sft" / "hf"
    model = AutoModelForImageTextToText.from_pretrained(hf)
    processor = AutoProcessor.from_pretrained(hf)
    sample, images = generate("spatial/count", 0, 99, "test", 168, 0.0)
    text = processor.apply_chat_template(build_messages(sample, 1, M2_SYSTEM_PROMPT), tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=images, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    response = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
    assert out.shape[1] > inputs["input_ids"].shape[1]
    assert response.strip(), "the exported model generated nothing"


def test_crash_then_resume_continues_from_last_checkpoint(tmp_path, cache_dir):
    common = ["stage=sft", *FAST, "callbacks.checkpoint.every_n_train_steps=2", "sft.max_steps=6", "grpo.max_steps=6", "trainer.val_check_interval=6"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        m2r.run(compose([*common, "+callbacks.crash._target_=conftest.CrashAfter", "+callbacks.crash.step=3"], tmp_path, cache_dir))
    last = torch.load(tmp_path / "sft" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2
    summary = m2r.run(compose(common, tmp_path, cache_dir))["sft"]
    assert summary["steps"] == 6
    steps = [r["step"] for r in json.loads((tmp_path / "sft" / "history.json").read_text())]
    assert steps == [1, 2, 3, 4, 5, 6]  # steps 1-2 from before the crash (restored), 3-6 after; nothing repeated
    # A finished step is not redone: the same command again skips training.
    again = m2r.run(compose(common, tmp_path, cache_dir))["sft"]
    assert again == summary


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_runs_one_step(experiment, tmp_path, cache_dir, shard_root, processor, model_cfg):
    from m2r.model.load import build_model

    overrides = [f"experiment={experiment}", *FAST, "sft.max_steps=1", "grpo.max_steps=1", "trainer.val_check_interval=1", "trainer.limit_val_batches=1"]
    cfg = compose(overrides, tmp_path, cache_dir)
    if cfg.model.source == "pretrained":
        # A real local checkpoint folder, loaded by the same path a 7B would take.
        ckpt = tmp_path / "ckpt"
        build_model(model_cfg, processor).save_pretrained(ckpt)
        processor.save_pretrained(ckpt)
        overrides += [f"model.path={ckpt}", "model.max_pixels=28224", "data.max_length=512", "data.num_workers=0", "model.dtype=float32"]
    if cfg.data.source == "shards":
        overrides += [f"data.root={shard_root}"]
    if cfg.stage.name == "grpo":  # the 7B RL settings, shrunk to one tiny step
        overrides += ["algo.G=2", "grpo.prompts_per_step=2", "grpo.module.max_new_tokens=8", "grpo.module.micro_batch_size=4"]
    results = m2r.run(compose(overrides, tmp_path, cache_dir))
    assert all(results[s]["steps"] == 1 for s in ("sft", "grpo") if s in results) and set(results) & {"sft", "grpo"}


def test_cli_build_and_bad_override(tmp_path):
    env = {"M2R_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin", **{k: v for k, v in __import__("os").environ.items() if k in ("HOME", "M2R_CACHE_DIR", "PYTHONPATH")}}
    ok = subprocess.run([sys.executable, "run.py", "stage=build", "data.train_per_task=2", "data.val_per_task=1", f"hydra.run.dir={tmp_path}/run"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    manifest = json.loads((tmp_path / "run" / "build" / "train" / "manifest.json").read_text())
    assert manifest["count"] == 2 * N_TASKS and (tmp_path / "run" / ".hydra" / "config.yaml").exists()
    bad = subprocess.run([sys.executable, "run.py", "stage=build", "model.max_pixels=lots", f"hydra.run.dir={tmp_path}/bad"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode != 0 and "max_pixels" in bad.stderr


def test_ddp_on_two_cpu_processes(tmp_path):
    """strategy=ddp with 2 gloo processes through the real CLI: no hang, every rank finishes, one export."""
    import os

    env = {**os.environ, "M2R_NO_PROGRESS": "1"}
    run = subprocess.run(
        [sys.executable, "run.py", "stage=sft", "strategy=ddp", "trainer.devices=2", "perceive.max_steps=0", "sft.max_steps=4", "grpo.max_steps=4", "trainer.val_check_interval=2",
         "data.train_per_task=4", "data.val_per_task=2", "data.samples_per_shard=2", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}/run"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=400,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "sft" / "summary.json").read_text())
    assert summary["steps"] == 4 and (tmp_path / "run" / "sft" / "hf" / "COMPLETE").exists()
    assert (tmp_path / "run" / "train_ddp_process_1.log").exists()  # the second rank really ran


@pytest.mark.parametrize("extra", [["sweep=curriculum"], ["launcher=local", "seed=0,1"]])
def test_cli_multirun_sweeps(tmp_path, extra):
    """`-m` with a study's sweep config (2 arms x 3 seeds; the build is shared by the arms of a seed) and with the submitit launcher (the SLURM code path, run locally)."""
    import os

    env = {**os.environ, "M2R_NO_PROGRESS": "1"}
    run = subprocess.run(
        [sys.executable, "run.py", "-m", "stage=build", "data.train_per_task=1", "data.val_per_task=1", "data.rl_per_task=1", *extra, f"hydra.sweep.dir={tmp_path}/sweep"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=400,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name.isdigit())
    assert jobs == (["0", "1", "2", "3", "4", "5"] if "sweep=curriculum" in extra else ["0", "1"])
    assert all((tmp_path / "sweep" / j / "build" / "rl" / "manifest.json").exists() for j in jobs)
    assert len(list((tmp_path / "sweep" / "shared" / "build").glob("*/rl/manifest.json"))) == (3 if "sweep=curriculum" in extra else 2)  # one per seed
