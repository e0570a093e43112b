"""Curriculum shards and CurriculumDataModule: order, drops, rank/worker split, single-task
batches, equal batch counts, end-of-stream policies, the cursor."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from m2r.config import DataConfig
from m2r.data.build import build_data
from m2r.data.curriculum import CurriculumDataModule, CurriculumSampler, rank_streams, task_weights, write_curriculum
from m2r.data.shards import read_manifest, sample_stream, shard_urls

TASKS = ["spatial/count", "spatial/depth", "general/chart"]


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """An rl split of 3 tasks x 24 samples, with made-up difficulties (some 0 and 1)."""
    root = tmp_path_factory.mktemp("rl_src")
    build_data(DataConfig(tasks=TASKS, train_per_task=1, val_per_task=1, rl_per_task=24, test_per_task=1, samples_per_shard=5), root, seed=0)
    rng = random.Random(0)
    diffs = {s.id: rng.choice([0.0, 0.125, 0.25, 0.5, 0.625, 0.875, 1.0]) for s, _ in sample_stream(shard_urls(root, "rl"), shuffle_shards=False)}
    return root, diffs


def _samples(root: Path, split: str = "rl") -> list:
    return [s for s, _ in sample_stream(shard_urls(root, split), shuffle_shards=False)]


def test_ordered_shards_sorted_with_drops_and_ranges(scored, tmp_path):
    src, diffs = scored
    m = write_curriculum(src, "rl", diffs, tmp_path, order="ordered", samples_per_shard=3)
    out = _samples(tmp_path)
    assert all(0.0 < s.difficulty < 1.0 for s in out)
    assert len(out) == sum(1 for d in diffs.values() if 0.0 < d < 1.0)
    for task in TASKS:
        d = [s.difficulty for s in out if s.task == task]
        assert d == sorted(d) and d
        st = m["stats"][task]
        assert st["in"] == 24 and st["kept"] + st["solved"] + st["unsolved"] == 24
        for shard in m["tasks"][task]["shards"]:  # each shard's recorded range is the range of its samples
            got = [s.difficulty for s, _ in sample_stream([str(tmp_path / "rl" / shard["path"])], shuffle_shards=False)]
            assert shard["difficulty"] == [min(got), max(got)]
    # ranges are non-decreasing shard after shard
    for task in TASKS:
        ranges = [s["difficulty"] for s in read_manifest(tmp_path, "rl")["tasks"][task]["shards"]]
        assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))


def test_random_order_same_samples_and_keep_flags(scored, tmp_path):
    src, diffs = scored
    write_curriculum(src, "rl", diffs, tmp_path / "o", order="ordered")
    write_curriculum(src, "rl", diffs, tmp_path / "r", order="random", seed=1)
    o, r = _samples(tmp_path / "o"), _samples(tmp_path / "r")
    assert sorted(s.id for s in o) == sorted(s.id for s in r)
    assert [s.id for s in o] != [s.id for s in r]
    write_curriculum(src, "rl", diffs, tmp_path / "all", drop_solved=False, drop_unsolved=False)
    assert len(_samples(tmp_path / "all")) == len(diffs)


def test_missing_scores_and_empty_curriculum_fail_clearly(scored, tmp_path):
    src, diffs = scored
    partial = dict(list(diffs.items())[:10])
    with pytest.raises(ValueError, match="no difficulty score"):
        write_curriculum(src, "rl", partial, tmp_path / "p")
    with pytest.raises(ValueError, match="curriculum is empty"):
        write_curriculum(src, "rl", {k: 1.0 for k in diffs}, tmp_path / "e")


def _batches(root, rank, world, workers, **kw):
    dm = CurriculumDataModule(root, batch_size=2, num_workers=workers, seed=3, rank=rank, world=world, **kw)
    dm.setup("fit")
    return list(dm.train_dataloader())


def test_two_ranks_two_workers(scored, tmp_path):
    """Disjoint ranks, the same task and batch size on both ranks at every step, non-decreasing
    difficulty within a task on each rank, single-task batches, equal counts."""
    src, diffs = scored
    write_curriculum(src, "rl", diffs, tmp_path, samples_per_shard=2)
    per_rank = [_batches(tmp_path, r, 2, workers=2, end_policy="drop") for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) > 0
    # one task draw shared by the ranks, and full batches everywhere (the same number of micro-batches)
    assert [b["task"] for b in per_rank[0]] == [b["task"] for b in per_rank[1]]
    assert {len(b["samples"]) for batches in per_rank for b in batches} == {2}
    assert len({b["task"] for b in per_rank[0]}) == len(TASKS)  # no rank's own RNG picked a single task
    seen = [[s.id for b in batches for s, _ in b["samples"]] for batches in per_rank]
    assert not set(seen[0]) & set(seen[1])
    for r, batches in enumerate(per_rank):
        streams = rank_streams(tmp_path, "rl", r, 2)
        for task in TASKS:
            ids = [s.id for b in batches for s, _ in b["samples"] if s.task == task]
            n = sum(c for _, _, c in streams[task])
            assert len(set(ids[:n])) == min(n, len(ids))  # each of the rank's samples once; beyond n only the hardest-shard fill
            d = [s.difficulty for b in batches for s, _ in b["samples"] if s.task == task]
            assert d[:n] == sorted(d[:n])
    for batches in per_rank:
        for b in batches:
            assert {s.task for s, _ in b["samples"]} == {b["task"]}
    # the workers change nothing: the same stream as with no workers
    assert [[s.id for s, _ in b["samples"]] for b in _batches(tmp_path, 0, 2, workers=0, end_policy="drop")] == \
           [[s.id for s, _ in b["samples"]] for b in per_rank[0]]
    # the ranks get their shards i % world
    streams = rank_streams(tmp_path, "rl", 1, 2)
    assert all(i % 2 == 1 for shards in streams.values() for _, i, _ in shards)


def test_drop_policy_consumes_each_sample_once_when_counts_match(scored, tmp_path):
    src, diffs = scored
    write_curriculum(src, "rl", diffs, tmp_path, samples_per_shard=2)
    batches = _batches(tmp_path, 0, 1, workers=0, end_policy="drop")
    ids = [s.id for b in batches for s, _ in b["samples"]]
    assert set(ids) == {s.id for s in _samples(tmp_path)}
    # an odd stream fills its last batch from its hardest shard: that is the only repeat
    m = read_manifest(tmp_path, "rl")["tasks"]
    assert len(ids) == sum(2 * -(-e["count"] // 2) for e in m.values())
    assert len(ids) - len(set(ids)) == sum(e["count"] % 2 for e in m.values())


def test_repeat_hardest_cycles_last_shard(scored, tmp_path):
    src, diffs = scored
    write_curriculum(src, "rl", diffs, tmp_path, samples_per_shard=2)
    streams = rank_streams(tmp_path, "rl", 0, 1)
    sampler = CurriculumSampler(streams, {t: 1.0 for t in streams}, 2, seed=0, rank=0, end_policy="repeat_hardest")
    reqs = [r for r, _ in zip(sampler, range(60))]
    for task, shards in streams.items():
        n, last = sum(c for _, _, c in shards), shards[-1][0]
        locs = [loc for r in reqs if r["task"] == task for loc in r["locs"]]
        assert len(locs) > n  # it went past the end
        assert len(set(locs[:n])) == n and all(p == last for p, _ in locs[n:])


def test_mix_weights(scored, tmp_path):
    src, diffs = scored
    write_curriculum(src, "rl", diffs, tmp_path, samples_per_shard=2, drop_solved=False, drop_unsolved=False)
    w = task_weights({t: 10 for t in TASKS}, {"*": 1.0, "general/*": 0.0})
    assert w == {"spatial/count": 1.0, "spatial/depth": 1.0, "general/chart": 0.0}
    assert task_weights({"a/x": 3, "b/y": 1}, {"*": 1.0}, proportional=True) == {"a/x": 3.0, "b/y": 1.0}
    dm = CurriculumDataModule(tmp_path, batch_size=2, weights={"*": 0.0, "spatial/count": 1.0}, rank=0, world=1)
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    assert {next(it)["task"] for _ in range(10)} == {"spatial/count"}
    with pytest.raises(ValueError, match="mix weight > 0"):
        dm = CurriculumDataModule(tmp_path, weights={"*": 0.0}, rank=0, world=1)
        dm.setup("fit")
        dm.sampler()


def test_cursor_restores_the_stream(scored, tmp_path):
    """Restarting from the cursor of batch k gives exactly batches k+1.. of the uninterrupted run."""
    src, diffs = scored
    write_curriculum(src, "rl", diffs, tmp_path, samples_per_shard=2)
    full = _batches(tmp_path, 0, 1, workers=0, end_policy="drop")
    k = 5
    dm = CurriculumDataModule(tmp_path, batch_size=2, seed=3, rank=0, world=1, end_policy="drop")
    dm.load_state_dict(json.loads(json.dumps({"world": 1, "cursors": {"0": full[k - 1]["cursor"]}})))  # survives a JSON round trip
    dm.setup("fit")
    rest = list(dm.train_dataloader())
    assert [[s.id for s, _ in b["samples"]] for b in rest] == [[s.id for s, _ in b["samples"]] for b in full[k:]]
    assert len(dm.train_dataloader()) == len(full) - k


def test_each_rank_restores_its_own_cursor_and_world_must_match(scored, tmp_path):
    src, diffs = scored
    write_curriculum(src, "rl", diffs, tmp_path, samples_per_shard=2)
    state = {"world": 2, "cursors": {"0": {"consumed": {}, "batches": 1, "rng": None}, "1": {"consumed": {}, "batches": 7, "rng": None}}}
    for r in range(2):
        dm = CurriculumDataModule(tmp_path, batch_size=2, rank=r, world=2)
        dm.load_state_dict(state)
        assert dm.resume_cursor["batches"] == (1, 7)[r]
    with pytest.raises(ValueError, match="same number of ranks"):
        CurriculumDataModule(tmp_path, batch_size=2, rank=0, world=4).load_state_dict(state)
    # a short task (fewer shards than ranks) leaves the mix on every rank, not only on the rank without it
    write_curriculum(src, "rl", diffs, tmp_path / "few", samples_per_shard=100)
    for r in range(2):
        dm = CurriculumDataModule(tmp_path / "few", batch_size=2, rank=r, world=2, weights={"*": 1.0})
        dm.setup("fit")
        assert all(w == 0.0 for w in dm.task_w.values())
