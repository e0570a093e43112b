"""Difficulty scoring with a stub policy whose accuracy is known, resumption after a crash, and
the real model policy for one batch."""

from __future__ import annotations

import json

import pytest

from m2r.data.shards import sample_stream, shard_urls
from m2r.rewards.router import router_from_config
from m2r.scoring.difficulty import model_policy, read_difficulties, score_difficulty


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    from conftest import compose

    tmp = tmp_path_factory.mktemp("cfg")
    return router_from_config(compose(["reward=binary"], tmp, tmp).reward)


def samples(shard_root):
    return list(sample_stream(shard_urls(shard_root, "train", ["general/chart", "spatial/depth", "general/word_problem"]), shuffle_shards=False))


class StubPolicy:
    """Sample i (in call order) gets i % (N + 1) correct responses out of N: a known accuracy."""

    def __init__(self, crash_after_calls: int | None = None):
        self.calls, self.seen, self.crash = 0, [], crash_after_calls

    def __call__(self, batch, N, batch_index):
        self.calls += 1
        if self.crash is not None and self.calls > self.crash:
            raise RuntimeError("simulated crash")
        out = []
        for sample, _ in batch:
            k = int(sample.id[-1]) % (N + 1)
            right, wrong = f"<think>x</think><answer>\\boxed{{{sample.answer}}}</answer>", "<think>x</think><answer>\\boxed{nope}</answer>"
            out.append([right] * k + [wrong] * (N - k))
            self.seen.append(sample.id)
        return out


def test_difficulty_is_one_minus_known_accuracy(shard_root, router, tmp_path):
    items = samples(shard_root)
    report = score_difficulty(items, StubPolicy(), router, tmp_path / "d.jsonl", N=4, batch_size=3)
    assert report == {"scored": len(items), "skipped": 0, "in_file": len(items)}
    d = read_difficulties(tmp_path / "d.jsonl")
    for s, _ in items:
        assert d[s.id] == pytest.approx(1 - (int(s.id[-1]) % 5) / 4)


def test_interrupted_scoring_continues_where_it_stopped(shard_root, router, tmp_path):
    items = samples(shard_root)
    first = StubPolicy(crash_after_calls=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        score_difficulty(items, first, router, tmp_path / "d.jsonl", N=4, batch_size=3)
    assert len(read_difficulties(tmp_path / "d.jsonl")) == 6  # two batches reached the disk
    second = StubPolicy()
    report = score_difficulty(items, second, router, tmp_path / "d.jsonl", N=4, batch_size=3)
    assert report["skipped"] == 6 and report["scored"] == len(items) - 6 and report["in_file"] == len(items)
    assert not set(first.seen[:6]) & set(second.seen)  # nothing scored twice
    lines = (tmp_path / "d.jsonl").read_text().splitlines()
    assert len(lines) == len({json.loads(l)["id"] for l in lines})


def test_model_policy_uses_rollouts(shard_root, router, processor, tmp_path):
    from m2r.config import ModelConfig
    from m2r.model.load import build_model

    items = samples(shard_root)[:2]
    policy = model_policy(build_model(ModelConfig(), processor), processor, max_new_tokens=6)
    report = score_difficulty(items, policy, router, tmp_path / "d.jsonl", N=3, batch_size=2)
    assert report["scored"] == 2
    rows = [json.loads(l) for l in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert all(r["n"] == 3 and 0.0 <= r["difficulty"] <= 1.0 for r in rows)


def test_a_line_cut_by_a_crash_loses_no_sample(shard_root, router, tmp_path):
    """The process died mid-write: the next run starts a fresh line instead of gluing onto the cut one."""
    items = samples(shard_root)
    out = tmp_path / "d.jsonl"
    score_difficulty(items[:3], StubPolicy(), router, out, N=4, batch_size=3)
    out.write_text(out.read_text() + '{"id": "cut-mid-wri')  # a torn last line, no newline
    score_difficulty(items, StubPolicy(), router, out, N=4, batch_size=3)
    assert set(read_difficulties(out)) == {s.id for s, _ in items}
