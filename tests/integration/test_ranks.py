"""Two CPU processes (gloo) through the real CLI: GRPO ranks stay in lockstep (the same task and
identical parameters after every step, disjoint prompts, one gradient all-reduce round per
optimizer step), a SIGKILLed 2-rank run resumes with every rank consuming each of its samples
once, `end_policy=drop` ends without hanging, FSDP2 runs SFT and GRPO with a reference model,
and difficulty scoring / held-out evaluation split over 2 ranks equal a 1-rank run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import m2r
from conftest import FAST, N_TASKS, ROOT, compose
from m2r.data.curriculum import ShardReader, rank_streams

pytestmark = pytest.mark.slow

TASKS = "[spatial/count,spatial/abs_distance,general/chart]"


def _env(cache_dir: Path) -> dict[str, str]:
    env = {**os.environ, "M2R_NO_PROGRESS": "1", "M2R_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT / "tests" / "helpers")}
    env.pop("M2R_RUN_ID", None)
    return env


def _cmd(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "run.py", "stage=grpo", "grpo.init=scratch", "strategy=ddp", "trainer.devices=2", f"paths.run_dir={run_dir}", f"hydra.run.dir={run_dir}",
            "data.train_per_task=1", "data.val_per_task=1", "data.test_per_task=1", f"data.tasks={TASKS}", "data.samples_per_shard=2",
            "grpo.module.max_new_tokens=12", "algo.G=2", "grpo.prompts_per_step=2", "grpo.module.micro_batch_size=2", "trainer.enable_progress_bar=false", "logger=csv",
            "+callbacks.probe._target_=rank_probe.RankProbe", f"+callbacks.probe.dirpath={run_dir}/probe", *extra]


def _probe(run_dir: Path, rank: int) -> list[dict]:
    """The last record per step (a resumed run repeats the steps after its checkpoint)."""
    by_step = {}
    for line in (run_dir / "probe" / f"probe.rank{rank}.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            by_step[row["step"]] = row
    return [by_step[k] for k in sorted(by_step)]


def test_grpo_two_ranks_lockstep_then_sigkill_and_resume(tmp_path, cache_dir, processor):
    run_dir, steps = tmp_path / "run", 8
    cmd = _cmd(run_dir, "data.rl_per_task=36", f"grpo.max_steps={steps}", "callbacks.checkpoint.every_n_train_steps=2")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(cache_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    last, probe0 = run_dir / "grpo" / "checkpoints" / "last.ckpt", run_dir / "probe" / "probe.rank0.jsonl"
    deadline, killed = time.time() + 300, False
    while time.time() < deadline and proc.poll() is None:
        n = len(probe0.read_text().splitlines()) if probe0.exists() else 0
        if last.exists() and n >= 5:
            os.killpg(proc.pid, signal.SIGKILL)  # both ranks: Lightning's launcher keeps them in this session
            killed = True
            break
        time.sleep(0.05)
    proc.wait()
    assert killed, f"the run ended before it could be killed: {proc.stderr.read().decode()[-3000:]}"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] < steps
    cursors = ckpt["datamodule_state_dict"] if "datamodule_state_dict" in ckpt else next(v for k, v in ckpt.items() if "CurriculumDataModule" in k)
    assert cursors["world"] == 2 and set(cursors["cursors"]) == {"0", "1"}  # every rank's cursor is in the checkpoint
    before = [len((run_dir / "probe" / f"probe.rank{r}.jsonl").read_text().splitlines()) for r in range(2)]

    again = subprocess.run(cmd, cwd=ROOT, env=_env(cache_dir), capture_output=True, text=True, timeout=500)
    assert again.returncode == 0, again.stderr[-3000:]
    raw1 = [json.loads(x) for x in (run_dir / "probe" / "probe.rank1.jsonl").read_text().splitlines()[before[1]:]]
    assert raw1[0]["step"] == ckpt["global_step"] + 1  # rank 1 continues from the checkpoint too
    final = [_probe(run_dir, r) for r in range(2)]
    for r in range(2):
        assert [row["step"] for row in final[r]] == list(range(1, steps + 1))
    for a, b in zip(*final):
        assert a["task"] == b["task"]  # one task draw shared by the ranks
        assert a["params"] == b["params"]  # the replicas never diverge
        assert not set(a["ids"]) & set(b["ids"])  # disjoint prompts
        assert len(a["ids"]) == len(b["ids"]) == 2
        assert a["allreduce_rounds"] == b["allreduce_rounds"] == 1  # 2 micro-batches, gradients synced once
    assert len({row["task"] for row in final[0]}) > 1
    for r in range(2):  # each rank consumes each of its samples once, in its stream's order, across the kill
        streams = rank_streams(run_dir / "build", "rl", r, 2)
        for task, shards in streams.items():
            seen = [i for row in final[r] if row["task"] == task for i in row["ids"]]
            order = [k for path, _, _ in shards for k in ShardReader().keys(path)]
            assert seen == order[: len(seen)]
    assert json.loads((run_dir / "grpo" / "summary.json").read_text())["steps"] == steps


def test_drop_policy_two_ranks_runs_to_the_end_of_the_streams(tmp_path, cache_dir, processor):
    run_dir = tmp_path / "run"
    # 3 tasks x 6 prompts, 2 per shard: each rank holds 2 or 4 prompts of a task; batches of 2 -> 1 batch per task on the smaller rank
    cmd = _cmd(run_dir, "data.rl_per_task=6", "grpo.max_steps=100", "curriculum.end_policy=drop")
    run = subprocess.run(cmd, cwd=ROOT, env=_env(cache_dir), capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    final = [_probe(run_dir, r) for r in range(2)]
    assert len(final[0]) == len(final[1]) == json.loads((run_dir / "grpo" / "summary.json").read_text())["steps"] >= 3
    assert [x["task"] for x in final[0]] == [x["task"] for x in final[1]]


def test_fsdp2_two_cpu_ranks_sft_then_grpo_with_reference(tmp_path, cache_dir, processor):
    """FSDP2 on 2 gloo ranks: SFT 3 steps, then GRPO 3 steps with beta > 0 (the sharded reference
    model runs), full parameters equal on both ranks and moving every step, exports that load."""
    run_dir = tmp_path / "run"
    env = _env(cache_dir)
    common = ["strategy=fsdp", "trainer.devices=2", f"paths.run_dir={run_dir}", f"hydra.run.dir={run_dir}", *FAST, "sft.max_steps=3", "grpo.max_steps=3",
              "data.rl_per_task=4", "data.samples_per_shard=1", "grpo.module.max_new_tokens=24", "algo.G=4", "grpo.prompts_per_step=2", "grpo.module.micro_batch_size=4",
              "callbacks=m2", "callbacks.rollouts.every_n_steps=1", "algo.beta=0.05", "callbacks.kl_annealing.beta_min=0.05", "trainer.enable_progress_bar=false",
              # a 3-step SFT model writes near-random tokens, never a well-formed answer; the lenient fallback reads its last number,
              # and EDNM (numeric spatial tasks, free-form: mc_ratio 0) scores any number above 0, so a group whose responses differ in their numbers has
              # rewards that differ (8 responses of 24 tokens a step give a digit somewhere almost surely; exact-match rewards rarely would)
              "reward.extraction=lenient",
              "data.tasks=[spatial/count,spatial/abs_distance,spatial/obj_size]", "data.mc_ratio=0"]  # still images on every rank (mixed media: the test below)
    probe = ["+callbacks.probe._target_=rank_probe.RankProbe", f"+callbacks.probe.dirpath={run_dir}/probe"]
    sft = subprocess.run([sys.executable, "run.py", "stage=sft", *common], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert sft.returncode == 0, sft.stderr[-3000:]
    summary = json.loads((run_dir / "sft" / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["loss_last"] == summary["loss_last"]  # finite, not NaN
    grpo = subprocess.run([sys.executable, "run.py", "stage=grpo", *common, *probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert grpo.returncode == 0, grpo.stderr[-3000:]
    hist = json.loads((run_dir / "grpo" / "history.json").read_text())
    losses = [r["train/loss"] for r in hist if "train/loss" in r]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert any(r.get("train/kl_coef", 0) > 0 for r in hist)  # the reference model was used
    rolled = [json.loads(line) for f in sorted((run_dir / "rollouts").glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert any(r["advantage"] != 0 for r in rolled), "every rollout rank 0 logged (all its steps) had advantage 0: no gradient there, so the check below could not tell"
    final = [_probe(run_dir, r) for r in range(2)]
    assert [x["params"] for x in final[0]] == [x["params"] for x in final[1]]  # full parameters gathered equal on both ranks
    assert final[0][0]["params"] != final[0][-1]["params"]  # and they moved (a step whose groups all tie has zero advantages, KL 0 at step 1)
    from transformers import AutoModelForImageTextToText

    for stage in ("sft", "grpo"):
        AutoModelForImageTextToText.from_pretrained(run_dir / stage / "hf")  # the exports from sharded state load


def test_perceive_two_ranks_draw_their_own_scenes_in_lockstep(tmp_path, cache_dir, processor):
    """The perception warm-up under DDP on 2 gloo ranks: each rank trains on its own fresh scenes (a stream that ignored
    the rank would give both the same batches), parameters stay equal, and SFT starts from the export."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "run.py", "stage=sft", "strategy=ddp", "trainer.devices=2", f"paths.run_dir={run_dir}", f"hydra.run.dir={run_dir}", *FAST,
           "data.tasks=[spatial/count,spatial/depth]", "perceive.max_steps=3", "trainer.limit_val_batches=0", "+callbacks.probe._target_=rank_probe.RankProbe", f"+callbacks.probe.dirpath={run_dir}/probe"]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(cache_dir), capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [[json.loads(line) for line in (run_dir / "probe" / f"probe.rank{r}.jsonl").read_text().splitlines()] for r in range(2)]
    warm = [[x for x in rank if x["step"] <= 3][:3] for rank in rows]  # the warm-up's steps (SFT's follow in the same file)
    assert [x["step"] for x in warm[0]] == [1, 2, 3] == [x["step"] for x in warm[1]]
    assert all(a["ids"] != b["ids"] for a, b in zip(*warm))  # different scenes on the two ranks at every step
    assert len({i for rank in warm for x in rank for i in x["ids"]}) == 6
    assert [x["params"] for x in warm[0]] == [x["params"] for x in warm[1]]  # one model
    assert json.loads((run_dir / "perceive" / "summary.json").read_text())["steps"] == 3
    assert (run_dir / "sft" / "hf" / "COMPLETE").exists()


def test_sft_rehearsal_on_two_ranks_is_written_once_and_split_between_them(tmp_path, cache_dir, processor):
    """`sft.rehearsal` under DDP on 2 gloo ranks: the perception samples are written once (rank 0's BEFORE_RANKS hook; rank
    1, which Lightning starts at fit, does not write them again), and the one stream (the tasks' shards and the
    rehearsal's) is split so that each sample is trained on by one rank, once."""
    import hashlib

    from m2r.data.collate import SFTCollator
    from m2r.data.shards import sample_stream, shard_urls

    run_dir = tmp_path / "run"
    cmd = [sys.executable, "run.py", "stage=sft", "strategy=ddp", "trainer.devices=2", f"paths.run_dir={run_dir}", f"hydra.run.dir={run_dir}", *FAST,
           "data.tasks=[spatial/count,spatial/depth]", "sft.rehearsal=8", "perceive.image_size=112", "perceive.objects=[1,3]", "quality.enabled=false",
           "trainer.limit_val_batches=0", "data.shuffle_buffer=1", "+callbacks.probe._target_=rank_probe.RankProbe", f"+callbacks.probe.dirpath={run_dir}/probe"]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(cache_dir), capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("rehearsal: 8 perception samples") + out.stderr.count("rehearsal: 8 perception samples") == 1  # rank 0 alone wrote them
    # FAST: 2 tasks x 4 traces and 8 rehearsal samples, 2 a shard (8 shards, 4 a rank); 2 steps of 4 a rank: each rank's whole
    # share, once (shuffle buffer 1: a larger one draws from the repeating stream, so some samples twice and others not yet)
    rows = [[r for x in _probe(run_dir, rank) for r in x["rows"]] for rank in range(2)]
    assert len(rows[0]) == len(rows[1]) == 8 and not set(rows[0]) & set(rows[1])  # disjoint: no sample on both ranks
    collate = SFTCollator(processor, 512)

    def row_hash(sample) -> str:
        b = collate([sample])
        return hashlib.sha256(b["input_ids"][0][b["attention_mask"][0].bool()].numpy().tobytes()).hexdigest()

    rehearsal = {row_hash(s) for s in sample_stream(shard_urls(run_dir / "sft" / "rehearsal", "train"), shuffle_shards=False)}
    tasks = {row_hash(s) for s in sample_stream(shard_urls(run_dir / "build", "train"), shuffle_shards=False)}
    assert len(rehearsal) == 8 and len(tasks) == 8
    trained = set(rows[0]) | set(rows[1])
    assert trained == rehearsal | tasks, (len(trained & rehearsal), len(trained & tasks))  # every sample of the one stream, the rehearsal's included, trained once


def test_fsdp2_ranks_with_different_media_stop_with_an_error_not_a_hang(tmp_path, cache_dir, processor):
    """Two tasks, one shard each: under FSDP2 rank 0 gets one and rank 1 the other, so one rank's batch is text only and
    the other's an image: one rank runs the vision tower and the other does not, and its sharded blocks would wait
    forever (so would a rank with images and videos beside one with images only); both ranks stop with the reason."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "run.py", "stage=sft", "strategy=fsdp", "trainer.devices=2", f"paths.run_dir={run_dir}", f"hydra.run.dir={run_dir}", *FAST,
           "data.tasks=[general/word_problem,spatial/count]", "data.train_per_task=1", "data.samples_per_shard=1", "data.batch_size=1",
           "sft.max_steps=2", "quality.enabled=false", "trainer.enable_progress_bar=false"]
    run = subprocess.run(cmd, cwd=ROOT, env=_env(cache_dir), capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    logs = run.stdout + run.stderr + "".join(p.read_text() for p in run_dir.glob("*.log"))
    assert "ranks' batches hold different media (rank 0: " in logs and "text only" in logs and "Use strategy=ddp" in logs, logs[-3000:]


def test_difficulty_and_heldout_on_two_ranks_equal_one_rank(tmp_path, cache_dir, processor):
    """The recipe's scoring steps under DDP (2 gloo processes), then the same steps in 1 process on the same SFT model."""
    two, one = tmp_path / "two", tmp_path / "one"
    steps = "stage.steps=[build,sft,difficulty,heldout_sft]"
    args = [*FAST, "stage=score", steps, "data.rl_per_task=5", "data.test_per_task=3", "curriculum.scoring.batch_size=3", "eval.batch_size=4"]
    run = subprocess.run([sys.executable, "run.py", "strategy=ddp", "trainer.devices=2", *args, f"paths.run_dir={two}", f"hydra.run.dir={two}"],
                         cwd=ROOT, capture_output=True, text=True, env=_env(cache_dir), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (two / "score" / "difficulty.rank1.jsonl").read_text().strip()  # rank 1 scored its share
    one.mkdir()
    for d in ("build", "sft"):
        shutil.copytree(two / d, one / d)
    m2r.run(compose([*args, "stage.steps=[difficulty,heldout_sft]"], one, cache_dir))

    def rows(run_dir):
        return {json.loads(x)["id"]: json.loads(x) for x in (run_dir / "score" / "difficulty.jsonl").read_text().splitlines()}

    assert rows(two) == rows(one) and len(rows(one)) == 5 * N_TASKS
    m2, m1 = (json.loads((d / "eval" / "heldout_sft" / "metrics.json").read_text()) for d in (two, one))
    assert {k: v for k, v in m2.items() if k != "seconds"} == {k: v for k, v in m1.items() if k != "seconds"}
    s2, s1 = ((d / "eval" / "heldout_sft" / "samples.jsonl").read_text() for d in (two, one))
    assert s2 == s1
