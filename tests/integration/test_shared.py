"""Steps shared across runs (m2r.shared): arms of a multirun that differ only in later settings make the
upstream outputs once, and two runs started at once never both make the same output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAST, ROOT, compose
from m2r import shared


def _cfg(tmp_path, cache, *extra):
    return compose([f"shared.dir={tmp_path / 'shared'}", *extra], tmp_path / "run", cache)


def test_keys_put_arms_with_the_same_upstream_settings_in_the_same_folders(tmp_path, cache_dir):
    base, lr, seed = _cfg(tmp_path, cache_dir), _cfg(tmp_path, cache_dir, "grpo.module.lr=3e-4"), _cfg(tmp_path, cache_dir, "seed=1")
    got = {name: shared.resolve(c, "report") for name, c in (("base", base), ("lr", lr), ("seed", seed))}
    for step in ("build", "quality", "sft", "difficulty", "curriculum", "heldout_sft"):
        assert got["base"][step]["dirs"] == got["lr"][step]["dirs"], step  # an RL setting: the same SFT, scoring and curriculum
    assert got["base"]["grpo"]["dirs"] != got["lr"]["grpo"]["dirs"] and got["base"]["heldout_grpo"] == got["lr"]["heldout_grpo"]  # (GRPO not made yet)
    assert all(got["base"][s]["dirs"] != got["seed"][s]["dirs"] for s in ("build", "sft", "grpo"))  # a seed is a run of its own (the filter follows once its build exists)
    assert Path(base.paths.sft_dir) == tmp_path / "shared" / "sft" / got["base"]["sft"]["key"]
    assert Path(base.paths.heldout_sft_dir).parent.name == "eval_heldout_sft" and Path(base.paths.rollouts_dir).parent.name == "rollouts"
    # shared.dir=auto outside a multirun, or null: every output in the run's own folder
    for d in ("auto", "null"):
        own = compose([f"shared.dir={d}"], tmp_path / "own", cache_dir)
        assert shared.resolve(own, "report") == {} and own.paths.sft_dir == str(tmp_path / "own" / "sft")
    # steps left out of shared.steps stay in the run folder
    part = _cfg(tmp_path, cache_dir, "shared.steps=[sft]")
    assert set(shared.resolve(part, "report")) == {"sft"} and part.paths.build_dir == str(tmp_path / "run" / "build")


def test_link_replaces_a_run_folder_and_moves_an_unshared_one_aside(tmp_path, cache_dir):
    cfg = _cfg(tmp_path, cache_dir)
    (tmp_path / "run" / "sft").mkdir(parents=True)
    (tmp_path / "run" / "sft" / "old.txt").write_text("made before sharing")
    shared.resolve(cfg, "sft")
    Path(cfg.paths.sft_dir).mkdir(parents=True)
    shared.link(cfg, "sft")
    link = tmp_path / "run" / "sft"
    assert link.is_symlink() and link.resolve() == Path(cfg.paths.sft_dir).resolve()
    assert [p.name for p in (tmp_path / "run").glob("sft.unshared-*/old.txt")] == ["old.txt"]
    shared.link(cfg, "sft")  # again: nothing to do
    assert link.resolve() == Path(cfg.paths.sft_dir).resolve()


def test_redoing_a_shared_step_in_place_is_refused(tmp_path, cache_dir):
    """resume=false (or ckpt_path) would retrain in a folder other jobs of the study read: an error says what to do instead."""
    import m2r

    for bad in ("resume=false", f"ckpt_path={tmp_path / 'x.ckpt'}"):
        with pytest.raises(ValueError, match="shared.dir=null"):
            m2r.run(_cfg(tmp_path, cache_dir, *FAST, "stage.steps=[build]", bad))


_HOLDER = """
import sys, time
from omegaconf import OmegaConf
from m2r import shared
cfg = OmegaConf.create({"paths": {"sft_dir": sys.argv[1], "run_dir": sys.argv[2]}, "shared": {"lock": "flock", "poll_s": 0.2}})
with shared.hold(cfg, "sft", "k"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_held_lock_excludes_others_and_a_killed_holder_releases_it(tmp_path):
    """The lock a run holds while it makes a step: nobody else gets it, and a job killed by SLURM leaves no stale lock."""
    import filelock

    folder = tmp_path / "shared" / "sft" / "k"
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder), str(tmp_path / "a")], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        lock = filelock.FileLock(str(folder.parent / "k.lock"))
        with pytest.raises(filelock.Timeout):
            lock.acquire(timeout=0.5)
        assert json.loads((folder.parent / "k.holder.json").read_text())["run_dir"] == str(tmp_path / "a")
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        lock.acquire(timeout=5)  # the kernel dropped the dead holder's lock
        lock.release()
    finally:
        if p.poll() is None:
            p.kill()


def _run(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "M2R_NO_PROGRESS": "1"}
    return subprocess.Popen([sys.executable, "run.py", *args], cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _made(run_dir: Path) -> dict[str, bool]:
    return {s: e["made"] for s, e in json.loads((run_dir / "shared.json").read_text()).items() if s != "_root"}


@pytest.mark.slow
def test_multirun_arms_make_sft_and_difficulty_once(tmp_path, cache_dir):
    """`python run.py -m grpo.module.lr=a,b`: one build, filter, SFT, scoring and curriculum for both arms; GRPO per arm."""
    sweep = tmp_path / "sweep"
    steps = "stage.steps=[build,quality,sft,difficulty,curriculum,grpo,report]"
    p = _run(["-m", *FAST, steps, "grpo.module.lr=1e-4,3e-4", f"hydra.sweep.dir={sweep}", f"paths.cache_dir={cache_dir}"], tmp_path / "log.txt")
    assert p.wait(timeout=900) == 0, (tmp_path / "log.txt").read_text()[-4000:]
    arms = [sweep / "0", sweep / "1"]
    made = [_made(a) for a in arms]
    for step in ("build", "quality", "sft", "difficulty", "curriculum"):
        assert [m[step] for m in made] == [True, False], step  # made by the first arm, reused by the second
    assert [m["grpo"] for m in made] == [True, True]
    for folder in ("build", "quality", "sft", "score", "curriculum"):  # one keyed output each, in the sweep's shared folder
        assert len([d for d in (sweep / "shared" / folder).iterdir() if d.is_dir()]) == 1, folder
    assert len([d for d in (sweep / "shared" / "grpo").iterdir() if d.is_dir()]) == 2
    # independent of m2r's own bookkeeping: the second arm's trainer never ran SFT (no SFT logs), but ran GRPO
    assert (arms[0] / "logs" / "sft").exists() and not (arms[1] / "logs" / "sft").exists() and (arms[1] / "logs" / "grpo").exists()
    assert (arms[0] / "sft").resolve() == (arms[1] / "sft").resolve() and (arms[0] / "grpo").resolve() != (arms[1] / "grpo").resolve()
    runs = [json.loads(line) for line in next((sweep / "shared" / "sft").glob("*.runs.jsonl")).read_text().splitlines()]
    assert [r["made"] for r in runs] == [True, False] and [r["run_dir"] for r in runs] == [str(a) for a in arms]
    assert all((a / "report.md").exists() and (a / "grpo" / "summary.json").exists() for a in arms)  # read through the links

    # One job run again on its own in its folder (no -m) with another filter threshold: its steps stay in the sweep's shared
    # folder (the run folder remembers it); the new filter output gets a key of its own, the first arm's is left alone.
    import m2r

    old_quality = (arms[0] / "quality").resolve()
    m2r.run(compose([*FAST, "stage.steps=[build,quality]", "quality.threshold=0.5"], arms[1], cache_dir))
    assert (arms[1] / "quality").is_symlink() and (arms[1] / "quality").resolve() != old_quality
    assert (arms[1] / "quality").resolve().parent == (sweep / "shared" / "quality").resolve() and (old_quality / "summary.json").exists()
    assert _made(arms[1])["quality"] is True and _made(arms[1])["build"] is False


@pytest.mark.slow
def test_two_runs_started_at_once_make_each_step_once(tmp_path, cache_dir):
    """Two arms launched together (as SLURM starts them) on one shared folder: one makes build, filter and SFT, the
    other waits for the lock and reuses them; without the lock both see no output and both make it."""
    common = [*FAST, "stage.steps=[build,quality,sft]", "sft.max_steps=6", f"shared.dir={tmp_path / 'shared'}", "shared.poll_s=1",
              f"paths.cache_dir={cache_dir}"]
    runs = [tmp_path / "a", tmp_path / "b"]
    procs = [_run([*common, f"paths.run_dir={r}", f"hydra.run.dir={r}", f"grpo.module.lr={lr}"], tmp_path / f"{r.name}.txt")
             for r, lr in zip(runs, ("1e-4", "3e-4"))]
    for p, r in zip(procs, runs):
        assert p.wait(timeout=900) == 0, (tmp_path / f"{r.name}.txt").read_text()[-4000:]
    made = [_made(r) for r in runs]
    for step in ("build", "quality", "sft"):
        assert sorted(m[step] for m in made) == [False, True], (step, made)
    waited = [json.loads((r / "shared.json").read_text()) for r in runs]
    assert all(w["_root"] == str(tmp_path / "shared") for w in waited)
    assert max(w["build"]["waited_s"] + w["sft"]["waited_s"] for w in waited) > 0  # the second really waited on the first
    assert sum((r / "logs" / "sft").exists() for r in runs) == 1
    assert len([d for d in (tmp_path / "shared" / "sft").iterdir() if d.is_dir()]) == 1
