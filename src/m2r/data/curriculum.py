"""Curriculum shards and `CurriculumDataModule` (DESIGN.md sections 3 and 4).

Shards: `write_curriculum` takes a split of scored samples and writes, per task, the samples
sorted easy to hard (`order=ordered`, ties by id) or in a seeded random order (`order=random`,
the ablation), `d = 0` (always solved) and `d = 1` (never solved) dropped by default. The
manifest records each shard's difficulty range and what was dropped.

Streaming: per task, this rank's stream is the concatenation of the task's shards i with
i % world == rank, in order, so a rank sees its samples easy to hard and ranks are disjoint.
Every step the sampler draws one task by the `mix` weights and takes the next `batch_size`
samples of that task: batches are single-task. The draw is shared by all ranks (an RNG seeded
without the rank, over a task set every rank holds), and every rank's batch has `batch_size`
samples, so all ranks run the same task with the same number of micro-batches at every step. The sampler runs in the
main process and DataLoader workers only read and decode (random access through the tar
headers), so the order holds with any number of workers.

The cursor (samples consumed per task, the RNG state, batches served) travels with each batch;
the DataModule keeps the cursor of the last batch the training loop took, the checkpoint holds
every rank's cursor (gathered when it is saved) and each rank restores its own, so a resumed run
continues at the next unseen sample even though the DataLoader prefetched further.

When a task's stream ends (`end_policy`):
- `repeat_hardest`: the task keeps serving its hardest stage, the last shard of its stream, in
  a cycle; the stream never ends and `trainer.max_steps` stops training.
- `drop`: the task leaves the mix after the same number of batches on every rank, the smallest
  over ranks of ceil(samples / batch_size) (a rank's last batch filled from its hardest shard),
  so no rank waits on one that ran out; the batches a rank holds beyond that are counted in the log.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import random
import shutil
import tarfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from m2r.data.schema import Sample
from m2r.data.shards import SplitWriter, decode, read_manifest
from m2r.progress import progress

log = logging.getLogger(__name__)

ORDERS = ("ordered", "random")
END_POLICIES = ("repeat_hardest", "drop")


class ShardReader:
    """Random access to the samples of tar shards: sample `pos` of shard `path` as a raw record
    (`{"__key__", "json", "<member>": bytes}`, as webdataset's `tarfile_to_samples` gives it).

    Each shard's tar headers are read once and kept (member offsets and sizes: a few bytes per
    member), so reading samples in any order costs one seek and read per member; only the open
    file handles are limited (`max_open`, least recently used closed first)."""

    def __init__(self, max_open: int = 8):
        self.max_open = max_open
        self._index: dict[str, list[tuple[str, list[tuple[str, int, int]]]]] = {}
        self._files: OrderedDict[str, Any] = OrderedDict()

    def __getstate__(self) -> dict:  # open files stay in the process that opened them
        return {"max_open": self.max_open, "_index": self._index, "_files": OrderedDict()}

    def _groups(self, path: str) -> list[tuple[str, list[tuple[str, int, int]]]]:
        if path not in self._index:
            groups: list[tuple[str, list[tuple[str, int, int]]]] = []
            with tarfile.open(path) as tar:
                for m in tar.getmembers():
                    if not m.isfile():
                        continue
                    key, ext = m.name.split(".", 1)  # webdataset's rule: the key ends at the first dot
                    if not groups or groups[-1][0] != key:
                        groups.append((key, []))
                    groups[-1][1].append((ext, m.offset_data, m.size))
            self._index[path] = groups
        return self._index[path]

    def _file(self, path: str):
        if path in self._files:
            self._files.move_to_end(path)
        else:
            self._files[path] = open(path, "rb")
            if len(self._files) > self.max_open:
                self._files.popitem(last=False)[1].close()
        return self._files[path]

    def keys(self, path: str) -> list[str]:
        return [k for k, _ in self._groups(path)]

    def record(self, path: str, pos: int) -> dict[str, Any]:
        key, members = self._groups(path)[pos]
        f = self._file(path)
        rec: dict[str, Any] = {"__key__": key}
        for ext, offset, size in members:
            f.seek(offset)
            rec[ext] = f.read(size)
        return rec


# ------------------------------------------------------------------------------------------------
# Writing curriculum shards


def write_curriculum(
    src_root: str | Path,
    split: str,
    difficulties: dict[str, float],
    out_root: str | Path,
    order: str = "ordered",
    drop_solved: bool = True,
    drop_unsolved: bool = True,
    samples_per_shard: int = 8,
    seed: int = 0,
    tol: float = 0.01,
) -> dict[str, Any]:
    """Write `<out_root>/<split>/` from `<src_root>/<split>` with each sample's `difficulty` set.

    `d <= tol` counts as always solved and `d >= 1 - tol` as never solved: with a graded accuracy
    reward (EDNM) a never-solved numeric sample scores d = 0.99998, not 1."""
    if order not in ORDERS:
        raise ValueError(f"curriculum.order={order!r} is not one of {ORDERS}")
    manifest = read_manifest(src_root, split)
    reader = ShardReader()
    out = Path(out_root) / split
    if out.exists():
        shutil.rmtree(out)
    writer = SplitWriter(out_root, split, samples_per_shard)
    stats: dict[str, dict[str, int]] = {}
    missing: list[str] = []
    for task, entry in manifest["tasks"].items():
        rows = []  # (difficulty, id, shard path, position)
        st = stats.setdefault(task, {"in": 0, "solved": 0, "unsolved": 0, "kept": 0})
        for shard in entry["shards"]:
            path = str(Path(src_root) / split / shard["path"])
            for pos, key in enumerate(reader.keys(path)):
                st["in"] += 1
                if key not in difficulties:
                    missing.append(key)
                    continue
                d = float(difficulties[key])
                if drop_solved and d <= tol:
                    st["solved"] += 1
                elif drop_unsolved and d >= 1.0 - tol:
                    st["unsolved"] += 1
                else:
                    rows.append((d, key, path, pos))
        if order == "ordered":
            rows.sort(key=lambda r: (r[0], r[1]))
        else:
            rows.sort(key=lambda r: r[1])
            random.Random(f"{seed}/curriculum/{task}").shuffle(rows)
        st["kept"] = len(rows)
        with progress() as bar:
            bar_id = bar.add_task(f"curriculum {task}", total=len(rows))
            for d, _, path, pos in rows:
                raw = reader.record(path, pos)
                sample = Sample.from_dict(json.loads(raw["json"]))
                sample.difficulty = d
                writer.write(sample, [raw[name] for name in sample.members()])
                bar.advance(bar_id)
    if missing:
        writer.abort()
        raise ValueError(f"{len(missing)} sample(s) of {src_root}/{split} have no difficulty score (e.g. {missing[:3]}); run the difficulty step to the end first")
    settings = {"order": order, "drop_solved": drop_solved, "drop_unsolved": drop_unsolved, "samples_per_shard": samples_per_shard, "seed": seed, "tol": tol}
    result = writer.close({"curriculum": settings, "stats": stats, "source": str(Path(src_root) / split)})
    kept = sum(s["kept"] for s in stats.values())
    log.info("curriculum (%s): kept %d of %d samples; dropped %d solved (d=0), %d unsolved (d=1)", order, kept,
             sum(s["in"] for s in stats.values()), sum(s["solved"] for s in stats.values()), sum(s["unsolved"] for s in stats.values()))
    if kept == 0:
        raise ValueError("the curriculum is empty: every sample was dropped as always or never solved; "
                         "set curriculum.drop_solved=false / curriculum.drop_unsolved=false, or score with more responses (curriculum.scoring.N)")
    return result


# ------------------------------------------------------------------------------------------------
# Streaming


def task_weights(tasks: dict[str, int], weights: dict[str, float], proportional: bool = False) -> dict[str, float]:
    """Weight of each task: the value of the last glob in `weights` that matches it (0 when none
    does), times the task's sample count when `proportional`."""
    out = {}
    for task, count in tasks.items():
        w = 0.0
        for pattern, value in weights.items():
            if fnmatch.fnmatchcase(task, pattern):
                w = float(value)
        if w < 0:
            raise ValueError(f"mix weight for {task} is {w}; weights must be >= 0")
        out[task] = w * (count if proportional else 1.0)
    return out


def rank_streams(root: str | Path, split: str, rank: int, world: int) -> dict[str, list[tuple[str, int, int]]]:
    """Per task, this rank's stream as (shard path, shard index, sample count) in order: shard i
    of the task goes to rank i % world."""
    manifest = read_manifest(root, split)
    return {
        task: [(str(Path(root) / split / s["path"]), i, s["count"]) for i, s in enumerate(entry["shards"]) if i % world == rank]
        for task, entry in manifest["tasks"].items()
    }


class CurriculumSampler:
    """Yields one request per batch: `{"task", "locs": [(shard, pos), ...], "cursor"}`, where
    `cursor` is the state after this batch (what a checkpoint must hold to continue after it).

    The task of each batch is drawn with an RNG seeded without the rank, from a task set that is
    the same on every rank, so all ranks draw the same task at every step (a rank running the
    text-only task while another runs images would issue different collectives under
    ZeRO-3/FSDP). Every batch has `batch_size` samples on every rank: a rank whose stream of the
    task is shorter fills its last batch from its hardest shard, as `repeat_hardest` does.
    `task_batches` (end_policy=drop) is the number of batches of each task, the same on every
    rank (the DataModule takes the smallest over ranks)."""

    def __init__(
        self,
        streams: dict[str, list[tuple[str, int, int]]],
        weights: dict[str, float],
        batch_size: int,
        seed: int,
        rank: int = 0,
        end_policy: str = "repeat_hardest",
        task_batches: dict[str, int] | None = None,
        state: dict[str, Any] | None = None,
    ):
        if end_policy not in END_POLICIES:
            raise ValueError(f"curriculum.end_policy={end_policy!r} is not one of {END_POLICIES}")
        self.batch_size, self.end_policy = batch_size, end_policy
        self.locs = {t: [(p, j) for p, _, n in shards for j in range(n)] for t, shards in streams.items()}
        self.hardest = {t: (shards[-1][2] if shards else 0) for t, shards in streams.items()}
        self.weights = {t: w for t, w in weights.items() if w > 0 and self.locs.get(t)}
        if not self.weights:
            raise ValueError(f"rank {rank} has no task with samples and a mix weight > 0 (tasks {list(streams)}, weights {weights}); check mix.weights")
        if end_policy == "drop":
            own = {t: math.ceil(len(self.locs[t]) / batch_size) for t in self.weights}
            self.task_batches = {t: min(own[t], (task_batches or own)[t]) for t in self.weights}
        else:
            self.task_batches = None
        self.rng = random.Random(f"{seed}/mix")  # no rank in the seed: one draw shared by all ranks
        self.consumed = {t: 0 for t in self.locs}
        self.batches = 0
        if state:
            self.consumed.update(state["consumed"])
            self.batches = state["batches"]
            self.rng.setstate(_as_rng_state(state["rng"]))

    @property
    def num_batches(self) -> int | None:
        return None if self.task_batches is None else sum(self.task_batches.values())

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an endless curriculum (end_policy=repeat_hardest) has no length")
        return max(0, self.num_batches - self.batches)

    def _active(self) -> list[str]:
        if self.task_batches is None:
            return list(self.weights)
        return [t for t in self.weights if self.consumed[t] < self.task_batches[t] * self.batch_size]

    def _take(self, task: str) -> list[tuple[str, int]]:
        locs, n, start = self.locs[task], len(self.locs[task]), self.consumed[task]
        h = self.hardest[task]  # past the end: cycle over the last shard (the hardest stage)
        idx = [i if i < n else n - h + (i - n) % h for i in range(start, start + self.batch_size)]
        self.consumed[task] = start + self.batch_size
        return [locs[i] for i in idx]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            active = self._active()
            if not active:
                return
            task = self.rng.choices(active, weights=[self.weights[t] for t in active])[0]
            locs = self._take(task)
            self.batches += 1
            yield {"task": task, "locs": locs, "cursor": self.state_dict()}

    def state_dict(self) -> dict[str, Any]:
        return {"consumed": dict(self.consumed), "batches": self.batches, "rng": _rng_state_list(self.rng.getstate())}


def _rng_state_list(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


def _as_rng_state(state: list) -> tuple:
    return (state[0], tuple(state[1]), state[2])


class _BatchReader(Dataset):
    """Map-style: a sampler request -> the batch `{"task", "samples": [(Sample, images)], "cursor"}`."""

    def __init__(self):
        self.reader = ShardReader()

    def __getitem__(self, request: dict[str, Any]) -> dict[str, Any]:
        samples = [decode(self.reader.record(path, pos)) for path, pos in request["locs"]]
        return {"task": request["task"], "samples": samples, "cursor": request["cursor"]}


def _identity(x):
    return x


class CurriculumDataModule(L.LightningDataModule):
    """GRPO prompts: single-task batches from per-task difficulty-ordered streams (module docstring)."""

    def __init__(
        self,
        root: str | Path,
        batch_size: int = 4,
        weights: dict[str, float] | None = None,
        proportional: bool = False,
        end_policy: str = "repeat_hardest",
        num_workers: int = 0,
        seed: int = 0,
        split: str = "rl",
        rank: int | None = None,
        world: int | None = None,
    ):
        super().__init__()
        if end_policy not in END_POLICIES:
            raise ValueError(f"curriculum.end_policy={end_policy!r} is not one of {END_POLICIES}")
        self.root, self.split, self.batch_size = Path(root), split, batch_size
        self.weights, self.proportional = dict(weights or {"*": 1.0}), proportional
        self.end_policy, self.num_workers, self.seed = end_policy, num_workers, seed
        self._rank, self._world = rank, world
        self.task_batches: dict[str, int] | None = None
        self.resume_cursor: dict[str, Any] | None = None  # from a checkpoint
        self.cursor: dict[str, Any] | None = None  # after the last batch the loop took

    @property
    def rank_world(self) -> tuple[int, int]:
        if self._rank is not None:
            return self._rank, self._world or 1
        if self.trainer is not None:
            return self.trainer.global_rank, self.trainer.world_size
        return 0, 1

    def setup(self, stage: str | None = None) -> None:
        rank, world = self.rank_world
        all_streams = [rank_streams(self.root, self.split, r, world) for r in range(world)]
        self.streams = all_streams[rank]
        counts = {t: sum(n for _, _, n in s) for t, s in self.streams.items()}
        weights = task_weights(counts, self.weights, self.proportional)
        # One task set for all ranks: a task enters the mix only when every rank holds samples of it.
        short = sorted(t for t, w in weights.items() if w > 0 and any(not s.get(t) for s in all_streams))
        if short:
            log.warning("task(s) %s have fewer shards than the %d ranks and are left out of the mix on every rank; "
                        "write the curriculum with a smaller curriculum.samples_per_shard", short, world)
        self.task_w = {t: (0.0 if t in short else w) for t, w in weights.items()}
        self.task_batches = None
        if self.end_policy == "drop":
            per_rank = [{t: math.ceil(sum(n for _, _, n in s[t]) / self.batch_size) for t in s if self.task_w.get(t, 0) > 0} for s in all_streams]
            self.task_batches = {t: min(p[t] for p in per_rank) for t in per_rank[0]}
            unused = sum(per_rank[rank].values()) - sum(self.task_batches.values())
            if unused:
                log.info("rank %d stops each task where the rank with the fewest batches of it stops; %d of its batch(es) go unused", rank, unused)

    @property
    def num_batches(self) -> int | None:
        return None if self.task_batches is None else sum(self.task_batches.values())

    def sampler(self) -> CurriculumSampler:
        rank, _ = self.rank_world
        return CurriculumSampler(self.streams, self.task_w, self.batch_size, self.seed, rank, self.end_policy, self.task_batches, state=self.resume_cursor)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_BatchReader(), sampler=self.sampler(), batch_size=None, collate_fn=_identity, num_workers=self.num_workers,
                          persistent_workers=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict) and "cursor" in batch:
            self.cursor = batch["cursor"]
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Every rank's cursor (a collective under torch.distributed: Lightning calls this on every
        rank when it saves a checkpoint, and rank 0 writes the file)."""
        rank, world = self.rank_world
        cursors = {rank: self.cursor}
        if world > 1 and dist.is_available() and dist.is_initialized():
            gathered: list = [None] * world
            dist.all_gather_object(gathered, self.cursor)
            cursors = dict(enumerate(gathered))
        return {"world": world, "cursors": {str(r): c for r, c in cursors.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        rank, world = self.rank_world
        if "cursors" not in state_dict:  # written before per-rank cursors: it holds rank 0's cursor alone
            if world > 1:
                raise ValueError("this checkpoint is from an m2r version that saved only rank 0's data cursor, so the other ranks "
                                 "cannot continue their own streams; resume it on 1 rank, or start the GRPO stage again (resume=false)")
            state_dict = {"world": 1, "cursors": {"0": state_dict.get("cursor")}}
        if state_dict["world"] != world:
            raise ValueError(f"the checkpoint's data cursor was saved by {state_dict['world']} rank(s) but this run has {world}; the curriculum "
                             f"is split over ranks by shard, so resume with the same number of ranks (trainer.devices x trainer.num_nodes)")
        if str(rank) not in state_dict["cursors"]:
            raise ValueError(f"the checkpoint holds data cursors for ranks {sorted(state_dict['cursors'])} but not for rank {rank}")
        self.resume_cursor = state_dict["cursors"][str(rank)]
        self.cursor = self.resume_cursor


def read_batches(path: str | Path) -> list[dict[str, Any]]:
    """The batch log of a GRPO run (`BatchLog`), the last record per step (a resumed run
    repeats the steps after its checkpoint)."""
    by_step: dict[int, dict] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        by_step[row["step"]] = row
    return [by_step[k] for k in sorted(by_step)]


class BatchLog(L.Callback):
    """Appends what each step trained on to a JSONL file (step, task, ids, difficulties), flushed
    every step: the curriculum made visible in the report, and the record a resume is checked by."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero or not isinstance(batch, dict):
            return
        samples: list[Sample] = [s for s, _ in batch["samples"]]
        row = {"step": trainer.global_step, "task": batch["task"], "ids": [s.id for s in samples],
               "difficulty": [s.difficulty for s in samples], "batches": batch["cursor"]["batches"]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
