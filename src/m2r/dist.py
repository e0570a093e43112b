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
    environment (torchrun's RANK/WORLD_SIZE, SLURM's PROCID/NTASKS), else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    for rank_key, world_key in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if os.environ.get(rank_key) is not None and os.environ.get(world_key) is not None:
            return int(os.environ[rank_key]), int(os.environ[world_key])
    return 0, 1


def local_device():
    """This rank's accelerator (cuda:LOCAL_RANK), or the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


def my_batches(items: Sequence[T], batch_size: int, rank: int, world: int) -> list[tuple[int, list[T]]]:
    """(batch index k, batch) for the batches k % world == rank of `items` cut into `batch_size`s."""
    batches = [list(items[s : s + batch_size]) for s in range(0, len(items), batch_size)]
    return [(k, b) for k, b in enumerate(batches) if k % world == rank]


def run_id(rank: int = 0) -> str:
    """An id shared by the ranks of one invocation: Lightning's launcher passes rank 0's
    environment to the ranks it spawns; SLURM and torchrun give every rank the same job id."""
    import uuid

    for key in ("M2R_RUN_ID", "TORCHELASTIC_RUN_ID"):
        if os.environ.get(key):
            return os.environ[key]
    if os.environ.get("SLURM_JOB_ID"):
        return f"slurm-{os.environ['SLURM_JOB_ID']}-{os.environ.get('SLURM_RESTART_COUNT', '0')}"
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
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(f"rank 0 waited {timeout_s:.0f} s for rank {r}'s part of {name} ({marker}); raise M2R_RANK_WAIT_S if the work is that long")
            time.sleep(0.5)
        out.extend(json.loads(line) for line in (parts / f"{name}.rank{r}.jsonl").read_text(encoding="utf-8").splitlines() if line.strip())
    return out
