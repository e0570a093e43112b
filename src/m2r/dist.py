"""Ranks outside `trainer.fit`: who am I, and how the long non-training work (difficulty scoring,
held-out and benchmark evaluation) is split over all ranks and gathered on rank 0.

The work is cut into the same batches a 1-rank run makes; rank r takes batches k with
k % world == r (seeded by k where sampling is random), so a greedy or seeded result is the same
whatever the number of ranks. Each rank writes its rows to `<dir>/parts/<name>.rank<r>.jsonl` and
a done marker carrying the run id; rank 0 waits for every marker and reads the rows back. Files,
not collectives: a rank that finishes early waits on the file system (no NCCL timeout), and the
split works for ranks that SLURM or torchrun started without a process group.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence, TypeVar

T = TypeVar("T")


def rank_world() -> tuple[int, int]:
    """(global rank, world size): the process group's when there is one, else the launcher's
    environment (torchrun's RANK/WORLD_SIZE, Lightning's spawned LOCAL_RANK/NODE_RANK/WORLD_SIZE
    on one node, SLURM's PROCID/NTASKS), else (0, 1). The pipeline and the split steps both ask here."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    env = os.environ
    if env.get("RANK") is not None and env.get("WORLD_SIZE") is not None:
        return int(env["RANK"]), int(env["WORLD_SIZE"])
    if env.get("LOCAL_RANK") is not None and env.get("WORLD_SIZE") is not None and env.get("NODE_RANK", "0") == "0":
        return int(env["LOCAL_RANK"]), int(env["WORLD_SIZE"])
    if env.get("SLURM_PROCID") is not None and env.get("SLURM_NTASKS") is not None:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
    return 0, 1


def local_device():
    """This rank's accelerator, or the CPU: the device the process group's rank uses (Lightning sets
    it), else LOCAL_RANK (torchrun, Lightning) or SLURM_LOCALID (srun)."""
    import torch
    import torch.distributed as dist

    if not torch.cuda.is_available():
        return torch.device("cpu")
    if dist.is_available() and dist.is_initialized():
        return torch.device("cuda", torch.cuda.current_device())
    local = os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
    return torch.device("cuda", int(local) % torch.cuda.device_count())


def my_batches(items: Sequence[T], batch_size: int, rank: int, world: int) -> list[tuple[int, list[T]]]:
    """(batch index k, batch) for the batches k % world == rank of `items` cut into `batch_size`s."""
    batches = [list(items[s : s + batch_size]) for s in range(0, len(items), batch_size)]
    return [(k, b) for k, b in enumerate(batches) if k % world == rank]


def run_id(rank: int = 0) -> str:
    """An id shared by the ranks of one invocation: Lightning's launcher passes rank 0's
    environment to the ranks it spawns; SLURM and torchrun give every rank the same job id.

    Under SLURM the id names the job step (each `srun` of a batch script is a step of its own, and
    `torchrun --rdzv-id=$SLURM_JOB_ID` in two steps would otherwise share an id) and its restart;
    torchrun's restart count is added where torchrun runs. Two invocations inside one step (a retry
    loop in one `srun`) look the same from every rank's environment: give each its own M2R_RUN_ID."""
    import uuid

    env = os.environ
    if env.get("M2R_RUN_ID"):
        return env["M2R_RUN_ID"]
    elastic = env.get("TORCHELASTIC_RUN_ID") not in (None, "", "none")  # plain torchrun sets "none" for every job
    restarts = f"-{env.get('TORCHELASTIC_RESTART_COUNT', '0')}" if elastic else ""
    if env.get("SLURM_JOB_ID"):  # torchrun's id too: two `torchrun --standalone` in one batch step each get a fresh one
        rdzv = f"-{env['TORCHELASTIC_RUN_ID']}" if elastic else ""
        return f"slurm-{env['SLURM_JOB_ID']}-{env.get('SLURM_STEP_ID', 'batch')}-{env.get('SLURM_RESTART_COUNT', '0')}{rdzv}{restarts}"
    if elastic:
        return f"{env['TORCHELASTIC_RUN_ID']}{restarts}"
    if rank != 0:
        raise RuntimeError("rank > 0 without M2R_RUN_ID, TORCHELASTIC_RUN_ID or SLURM_JOB_ID: set M2R_RUN_ID to the same value on every rank")
    os.environ["M2R_RUN_ID"] = uuid.uuid4().hex
    return os.environ["M2R_RUN_ID"]


def gather_rows(folder: str | Path, name: str, rows: Iterable[dict[str, Any]], rank: int, world: int, timeout_s: float | None = None) -> list[dict] | None:
    """Every rank hands in its rows; rank 0 gets all ranks' rows (rank 0's first), the others None."""
    rows = list(rows)
    if world == 1:
        return rows
    parts = Path(folder) / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    rid = run_id(rank)
    data, done = parts / f"{name}.rank{rank}.jsonl", parts / f"{name}.rank{rank}.done"
    tmp = data.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(data)
    done.write_text(rid)
    if rank != 0:
        return None
    timeout_s = float(os.environ.get("M2R_RANK_WAIT_S", 86400)) if timeout_s is None else timeout_s
    t0 = time.perf_counter()
    out: list[dict] = []
    for r in range(world):
        marker = parts / f"{name}.rank{r}.done"
        while not (marker.exists() and marker.read_text() == rid):
            failed = failure(r, rid)
            if failed:
                raise RuntimeError(f"rank {r} failed while rank 0 waited for its part of {name}: {failed}")
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(f"rank 0 waited {timeout_s:.0f} s for rank {r}'s part of {name} ({marker}); raise M2R_RANK_WAIT_S if the work is that long")
            time.sleep(0.5)
        out.extend(json.loads(line) for line in (parts / f"{name}.rank{r}.jsonl").read_text(encoding="utf-8").splitlines() if line.strip())
    for r in range(world):  # read once: a later run with the same id must not take these for its own
        (parts / f"{name}.rank{r}.done").unlink(missing_ok=True)
    return out


def report_failure(rank: int, step: str, error: BaseException) -> None:
    """Rank > 0 failed in a split step: say so where rank 0, waiting in `gather_rows`, looks."""
    marks = os.environ.get("M2R_STEP_MARKS")
    if marks:
        Path(marks, f"failed.rank{rank}.json").write_text(json.dumps({"run_id": run_id(rank), "step": step, "error": f"{type(error).__name__}: {error}"}))


def failure(rank: int, rid: str) -> str | None:
    marks = os.environ.get("M2R_STEP_MARKS")
    path = Path(marks, f"failed.rank{rank}.json") if marks else None
    if path is None or not path.exists():
        return None
    try:
        row = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return f"{row['step']}: {row['error']}" if row.get("run_id") == rid else None
