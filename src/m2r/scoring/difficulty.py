"""Difficulty scoring by rollouts (paper section 2.1.2): difficulty = 1 - mean accuracy reward of
N sampled responses of a model (the SFT output by default), with the rollout and reward code the
RL stage uses.

Results are appended to a JSONL file as each batch finishes (`{"id", "task", "difficulty",
"accuracy", "n"}` per sample); a rerun reads the file first and skips the samples already scored,
so an interrupted scoring run continues where it stopped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Iterable, Sequence

from PIL import Image

from m2r.data.schema import Sample
from m2r.progress import progress
from m2r.rewards.router import RewardRouter

log = logging.getLogger(__name__)

# A policy maps a batch of (sample, images) and N to N responses per sample.
Policy = Callable[[Sequence[tuple[Sample, list[Image.Image]]], int], list[list[str]]]


def model_policy(model, processor, max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0, seed: int = 0) -> Policy:
    """The RL stage's rollouts as a policy: N sampled responses per prompt, one batched generate."""
    from m2r.rl.rollout import generate_rollouts

    calls = {"n": 0}

    def policy(batch, N):
        calls["n"] += 1
        ro = generate_rollouts(model, processor, batch, N, max_new_tokens, temperature, top_p, seed=seed * 1_000_003 + calls["n"])
        return [ro.texts[i * N : (i + 1) * N] for i in range(len(batch))]

    return policy


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
) -> dict[str, float]:
    """Score every sample not yet in `out_path`; returns counts (scored now, skipped, total in file)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = scored_ids(out_path)
    scored = skipped = 0
    with open(out_path, "a", encoding="utf-8") as f, progress() as bar:
        task = bar.add_task("difficulty", total=total)
        batch: list = []

        def flush() -> None:
            nonlocal scored
            responses = policy(batch, N)
            for (sample, _), rs in zip(batch, responses):
                acc = [router.score(r, sample).accuracy for r in rs]
                mean = sum(acc) / len(acc)
                f.write(json.dumps({"id": sample.id, "task": sample.task, "difficulty": 1.0 - mean, "accuracy": mean, "n": len(acc)}) + "\n")
                scored += 1
            f.flush()  # each batch is on disk before the next starts
            bar.advance(task, len(batch))
            batch.clear()

        for sample, images in samples:
            if sample.id in done:
                skipped += 1
                bar.advance(task, 1)
                continue
            batch.append((sample, images))
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
    log.info("difficulty: scored %d, skipped %d already scored, %s", scored, skipped, out_path)
    return {"scored": scored, "skipped": skipped, "in_file": len(scored_ids(out_path))}


def read_difficulties(path: str | Path) -> dict[str, float]:
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            out[row["id"]] = row["difficulty"]
        except (json.JSONDecodeError, KeyError):
            continue
    return out
