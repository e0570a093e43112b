"""Difficulty scoring by rollouts (paper section 2.1.2): difficulty = 1 - mean accuracy reward of
N sampled responses of a model (the SFT output by default), with the rollout and reward code the
RL stage uses.

Results are appended to a JSONL file as each batch finishes (`{"id", "task", "difficulty",
"accuracy", "n"}` per sample); a rerun reads the file first and skips the samples already scored,
so an interrupted scoring run continues where it stopped.

Over several ranks, the stream is cut into the batches a 1-rank run makes and rank r scores the
batches k with k % world == r, sampling with a seed of k, so the scores do not depend on the
number of ranks; each rank appends to its own `<name>.rank<r>.jsonl` and rank 0 merges the parts
into the main file once every rank is done (`m2r.dist.gather_rows`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Iterable, Sequence

from PIL import Image

from m2r.data.schema import Sample
from m2r.progress import progress
from m2r.rewards.router import RewardRouter, score_many

log = logging.getLogger(__name__)

# A policy maps a batch of (sample, images), N and the batch's index (its sampling seed) to N responses per sample.
Policy = Callable[[Sequence[tuple[Sample, list[Image.Image]]], int, int], list[list[str]]]


def model_policy(model, processor, max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0, seed: int = 0) -> Policy:
    """The RL stage's rollouts as a policy: N sampled responses per prompt, one batched generate."""
    from m2r.rl.rollout import generate_rollouts

    def policy(batch, N, batch_index):
        ro = generate_rollouts(model, processor, batch, N, max_new_tokens, temperature, top_p, seed=seed * 1_000_003 + batch_index)
        return [ro.texts[i * N : (i + 1) * N] for i in range(len(batch))]

    return policy


def part_path(out_path: str | Path, rank: int) -> Path:
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}.rank{rank}{out_path.suffix}")


def _end_line(path: Path) -> None:
    """A file cut mid-line by a crash gets its newline, so the next append starts a line of its own."""
    if path.exists() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                f.write(b"\n")


def scored_ids(path: str | Path) -> set[str]:
    path = Path(path)
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            ids.add(json.loads(line)["id"])
        except (json.JSONDecodeError, KeyError):
            continue  # a line cut by a crash is scored again
    return ids


def score_difficulty(
    samples: Iterable[tuple[Sample, list[Image.Image]]],
    policy: Policy,
    router: RewardRouter,
    out_path: str | Path,
    N: int = 8,
    batch_size: int = 8,
    total: int | None = None,
    rank: int = 0,
    world: int = 1,
) -> dict[str, float]:
    """Score every sample of this rank's batches not yet scored; returns counts (scored now, skipped,
    total in the main file: on rank 0 after merging every rank's part, on other ranks their part)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    mine = out_path if world == 1 else part_path(out_path, rank)
    done = scored_ids(out_path) | scored_ids(mine)
    _end_line(mine)
    scored = skipped = 0
    with open(mine, "a", encoding="utf-8") as f, progress() as bar:
        task = bar.add_task("difficulty" if world == 1 else f"difficulty (rank {rank}/{world})", total=None if total is None else -(-total // world))
        batch: list = []
        k = 0  # the batch index in the whole stream: which rank scores it, and its seed

        def flush() -> None:
            nonlocal scored, skipped, k
            todo = [(s, imgs) for s, imgs in batch if s.id not in done]
            if k % world == rank:
                if todo:
                    # the whole batch is sampled as in an uninterrupted run (same rows, same seed); only new ids are written
                    responses = policy(batch, N, k)
                    new = [(sample, rs) for (sample, _), rs in zip(batch, responses) if sample.id not in done]
                    flat = score_many(router, [r for _, rs in new for r in rs], [sample for sample, rs in new for _ in rs])  # one pooled batch
                    start = 0
                    for sample, rs in new:
                        acc = [sc.accuracy for sc in flat[start : start + len(rs)]]
                        start += len(rs)
                        mean = sum(acc) / len(acc)
                        f.write(json.dumps({"id": sample.id, "task": sample.task, "difficulty": 1.0 - mean, "accuracy": mean, "n": len(acc)}) + "\n")
                        scored += 1
                    f.flush()  # each batch is on disk before the next starts
                skipped += len(batch) - len(todo)
                bar.advance(task, len(batch))
            batch.clear()
            k += 1

        for sample, images in samples:
            batch.append((sample, images))
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
    if world > 1:
        from m2r.dist import gather_rows

        gather_rows(out_path.parent, out_path.stem, [], rank, world)  # every rank's part is complete
        if rank == 0:
            have = scored_ids(out_path)
            _end_line(out_path)
            with open(out_path, "a", encoding="utf-8") as f:
                for r in range(world):
                    for line in part_path(out_path, r).read_text(encoding="utf-8").splitlines():
                        try:
                            sid = json.loads(line)["id"]
                        except (json.JSONDecodeError, KeyError):
                            continue
                        if sid not in have:
                            f.write(line + "\n")
                            have.add(sid)
    log.info("difficulty: scored %d, skipped %d already scored, %s", scored, skipped, mine)
    return {"scored": scored, "skipped": skipped, "in_file": len(scored_ids(out_path if rank == 0 else mine))}


def read_difficulties(path: str | Path) -> dict[str, float]:
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            out[row["id"]] = row["difficulty"]
        except (json.JSONDecodeError, KeyError):
            continue
    return out
