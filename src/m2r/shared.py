"""Steps shared across runs: the arms of a study reuse the outputs of the steps they have in common.

With `shared.dir` set, each step in `shared.steps` writes to `<shared.dir>/<folder>/<key>/` instead of
its run folder, where `<key>` is the step's key (`m2r.stepkeys`: the config that shapes the step's
output and the keys of the outputs it reads; the build's key is the data config and seed). The run
folder gets a link of the usual name (`sft`, `score`, `eval/heldout_sft`, ...) to the shared folder,
so the report and `m2r.compare` read a run the same way whether its steps were shared or not.
`shared.dir=auto` (the default) is `<sweep dir>/shared` under `python run.py -m` and off for a
single run: a multirun over GRPO settings trains SFT once, a multirun over seeds once per seed.
Point several sweeps at one folder (`shared.dir=/scratch/m2r-shared`) to share across studies.

Arms started at once must not both make the same output. The first arm to reach a step takes a
lock next to the output (`<key>.lock`, `filelock`: an `fcntl` lock, so a killed job releases it)
and holds it while every rank of that arm runs the step; another arm needing the same output
waits for the lock, then finds the output complete and skips it. If the holder died, the next
arm to get the lock resumes the step from its checkpoint (same key, so `prepare` keeps it).
Where the filesystem has no `flock`, filelock falls back to such a lock file by itself;
`shared.lock=soft` asks for it: a lock file created atomically, which a killed job leaves behind
(the waiting jobs' log names the file to delete). A Lustre mounted with `localflock` locks within
one node only: mount with `flock`, or run a study's jobs on one node.

Each arm writes `<run>/shared.json` (step -> key, folder, whether this arm made the output and
how long it waited), and each output folder's `<key>.runs.jsonl` says which runs made or reused it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from omegaconf import DictConfig, OmegaConf

from m2r import stepkeys

log = logging.getLogger(__name__)

# Steps that can be shared, in the order a recipe runs them; the paths.* keys each writes and the
# name of that folder inside a run folder (where the link goes).
ORDER = ["build", "quality", "perceive", "sft", "difficulty", "curriculum", "heldout_sft", "grpo", "heldout_grpo"]
PATHS: dict[str, dict[str, str]] = {
    "build": {"build_dir": "build"}, "quality": {"quality_dir": "quality"}, "perceive": {"perceive_dir": "perceive"}, "sft": {"sft_dir": "sft"}, "difficulty": {"score_dir": "score"},
    "curriculum": {"curriculum_dir": "curriculum"}, "heldout_sft": {"heldout_sft_dir": "eval/heldout_sft"},
    "grpo": {"grpo_dir": "grpo", "rollouts_dir": "rollouts"}, "heldout_grpo": {"heldout_grpo_dir": "eval/heldout_grpo"},
}


def shared_root(cfg: DictConfig) -> Path | None:
    """The shared folder of this run, or None when its steps write to its own folder."""
    d = OmegaConf.select(cfg, "shared.dir", default=None)
    if d in (None, "", "none", "null"):
        return None
    if str(d) == "auto":
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return Path(HydraConfig.get().sweep.dir).absolute() / "shared"
        # a job of a sweep run again on its own (hydra.run.dir=<sweep>/3): its steps stay where the sweep put them
        recorded = Path(cfg.paths.run_dir) / "shared.json"
        try:
            return Path(json.loads(recorded.read_text())["_root"])
        except (OSError, ValueError, KeyError):
            return None
    return Path(str(d)).absolute()


def _shares(cfg: DictConfig, step: str) -> bool:
    if step not in ORDER or step not in list(OmegaConf.select(cfg, "shared.steps", default=[]) or []):
        return False
    if step == "quality" and not cfg.quality.enabled:
        return False  # the filter does not run
    if step == "perceive" and not stepkeys.perceive_on(cfg):
        return False  # no warm-up
    if step == "build":  # given shards or a given build folder are read in place: there is nothing to build
        return not cfg.data.get("root") and str(cfg.data.source) != "shards"
    return True


def key_of(cfg: DictConfig, step: str) -> str:
    """The key a step's output is filed under (the build: its data config and seed, as `build_data` keys it)."""
    if step == "build":
        from m2r.data.build import build_key

        return build_key(OmegaConf.to_object(cfg.data), cfg.seed)
    return stepkeys.step_key(cfg, step)[0]


def resolve(cfg: DictConfig, upto: str | None) -> dict[str, dict[str, Any]]:
    """Point `cfg.paths` of the shared steps up to and including `upto` (every one when `upto` is not a
    shareable step: eval, report) at their keyed folders, in recipe order, so that each key is computed
    from the outputs its upstream steps already point at. Returns step -> {key, dirs}."""
    root = shared_root(cfg)
    out: dict[str, dict[str, Any]] = {}
    if root is None:
        return out
    last = ORDER.index(upto) if upto in ORDER else len(ORDER) - 1
    for step in ORDER[: last + 1]:
        if not _shares(cfg, step):
            continue
        key = key_of(cfg, step)
        dirs = {}
        for path_key, name in PATHS[step].items():
            folder = root / name.replace("/", "_") / key
            cfg.paths[path_key] = str(folder)
            dirs[path_key] = str(folder)
        out[step] = {"key": key, "dirs": dirs}
    return out


def adopt(cfg: DictConfig, paths: dict[str, str] | None) -> None:
    """Take the paths rank 0 resolved (the other ranks of a run must read and write where rank 0 does)."""
    for k, v in (paths or {}).items():
        cfg.paths[k] = v


def resolved_paths(cfg: DictConfig) -> dict[str, str]:
    return {k: str(cfg.paths[k]) for step in ORDER for k in PATHS[step]}


def complete(cfg: DictConfig, step: str, key: str) -> bool:
    """Whether `step`'s output at its (resolved) folder is finished and was made with `key`."""
    if step == "build":
        from m2r.data.build import SPLITS
        from m2r.data.shards import read_manifest

        from m2r.data.build import _inputs_unchanged

        root = Path(cfg.paths.build_dir)
        done = all((root / s / "manifest.json").exists() and read_manifest(root, s).get("build_key") == key for s in SPLITS)
        if done and not all(_inputs_unchanged(root / s) for s in SPLITS):
            raise RuntimeError(f"image files the shared build {root} read have changed since it was made, and other jobs may be reading it: "
                               "start a new sweep folder (or another shared.dir), or delete that build to have it made again")
        return done
    return stepkeys.recorded_key(cfg, step) == key


def link(cfg: DictConfig, step: str) -> None:
    """`<run>/<name>` -> the shared folder, for each folder `step` writes (a run's own older output is moved aside)."""
    run = Path(cfg.paths.run_dir)
    for path_key, name in PATHS[step].items():
        target, here = Path(cfg.paths[path_key]), run / name
        here.parent.mkdir(parents=True, exist_ok=True)
        if here.is_symlink():
            if here.resolve() == target.resolve():
                continue
            here.unlink()
        elif here.exists():
            aside = here.with_name(f"{here.name}.unshared-{time.strftime('%Y%m%d-%H%M%S')}")
            log.warning("%s holds this run's own output from before its steps were shared; moved to %s (the shared one is %s)", here, aside, target)
            here.rename(aside)
        here.symlink_to(os.path.relpath(target, here.parent), target_is_directory=True)


def _lock(path: Path, kind: str):
    import filelock

    if kind == "soft":
        return filelock.SoftFileLock(str(path))
    if kind != "flock":
        raise ValueError(f"shared.lock={kind!r}: say flock (an fcntl lock, released when a job dies) or soft (a lock file, for filesystems without flock)")
    return filelock.FileLock(str(path))


@contextmanager
def hold(cfg: DictConfig, step: str, key: str, on_wait: Callable[[], None] | None = None) -> Iterator[dict[str, Any]]:
    """Hold `step`'s lock for `key` while the step runs (rank 0 of a run), waiting while another run holds it
    (`on_wait` is called every `shared.poll_s` of waiting: rank 0 tells its other ranks it is still alive).
    Yields {"waited_s", "made"}: fill `made` once the step has run."""
    import filelock

    folder = Path(cfg.paths[next(iter(PATHS[step]))])  # the first folder the step writes
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.parent / f"{key}.lock"
    holder_file = folder.parent / f"{key}.holder.json"
    lock = _lock(lock_path, str(OmegaConf.select(cfg, "shared.lock", default="flock")))
    poll = float(OmegaConf.select(cfg, "shared.poll_s", default=30.0))
    t0 = time.perf_counter()
    while True:
        try:
            lock.acquire(timeout=poll)
            break
        except filelock.Timeout:
            try:
                holder = json.loads(holder_file.read_text())
            except (OSError, ValueError):
                holder = {}
            log.info("step %s (key %s) is being made by %s; waited %.0f s%s", step, key, holder.get("run_dir", "another run"), time.perf_counter() - t0,
                     f" (a soft lock a killed job left stays until deleted: {lock_path})" if isinstance(lock, filelock.SoftFileLock) else "")
            if on_wait is not None:
                on_wait()
    state = {"waited_s": round(time.perf_counter() - t0, 1), "made": False}
    try:
        holder_file.write_text(json.dumps({"run_dir": str(cfg.paths.run_dir), "host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}))
        yield state
    finally:
        with open(folder.parent / f"{key}.runs.jsonl", "a") as f:  # under the lock: one writer per key
            f.write(json.dumps({"run_dir": str(cfg.paths.run_dir), "made": state["made"], "host": socket.gethostname(), "pid": os.getpid(),
                                "time": time.strftime("%Y-%m-%d %H:%M:%S"), "waited_s": state["waited_s"]}) + "\n")
        lock.release()


def record(cfg: DictConfig, step: str, entry: dict[str, Any]) -> None:
    """Add `step`'s entry to `<run>/shared.json`."""
    f = Path(cfg.paths.run_dir) / "shared.json"
    data = json.loads(f.read_text()) if f.exists() else {}
    data["_root"] = str(shared_root(cfg))
    data[step] = entry
    tmp = f.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(f)
