"""The rollout engine interface and the GRPO step's phases: HFEngine cut into several generate calls gives one
record whose log-probs equal each call's own, and each phase runs alone on a Trajectory."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from m2r.config import ModelConfig
from m2r.data.shards import sample_stream, shard_urls
from m2r.model.load import build_model
from m2r.modules.grpo import GRPOModule, Trajectory
from m2r.rewards.router import Scored
from m2r.rl.core import token_logps
from m2r.rl.engine import HFEngine
from m2r.rl.rollout import generate_rollouts


def _batch(shard_root, n=3):
    stream = sample_stream(shard_urls(shard_root, "rl", ["spatial/count", "general/word_problem"]), shuffle_shards=False)
    return [x for _, x in zip(range(n), stream)]


def test_engine_in_parts_is_one_record_with_each_parts_log_probs(processor, shard_root):
    model = build_model(ModelConfig(), processor).eval()
    batch, G = _batch(shard_root), 2
    whole = HFEngine().generate(model, processor, batch, G, 6, seed=5)
    direct = generate_rollouts(model, processor, batch, G, 6, seed=5)
    assert torch.equal(whole.completion_ids, direct.completion_ids)  # max_rows=None: one call, as before
    parts = HFEngine(max_rows=G).generate(model, processor, batch, G, 6, seed=5)  # one prompt per call
    assert len(parts.texts) == len(batch) * G and parts.completion_ids.shape[0] == len(batch) * G
    assert [s.id for s in parts.samples] == [s.id for s, _ in batch] and parts.prompt_lengths == direct.prompt_lengths
    with torch.no_grad():
        merged = token_logps(model, parts.prompt_inputs, parts.completion_ids)
        for b in range(len(batch)):
            one = generate_rollouts(model, processor, batch[b : b + 1], G, 6, seed=5 + 7_919 * b)
            rows = slice(b * G, (b + 1) * G)
            assert torch.equal(parts.completion_ids[rows, : one.completion_ids.shape[1]], one.completion_ids)
            own = token_logps(model, one.prompt_inputs, one.completion_ids)
            L = one.completion_ids.shape[1]
            m = one.completion_mask.bool()
            assert torch.allclose(merged[rows, :L][m], own[m], atol=1e-5)  # extra left padding changes nothing
            assert not parts.completion_mask[rows, L:].any()
    with pytest.raises(ValueError, match="rollout.max_rows=0"):
        HFEngine(max_rows=0)


class _Fixed:
    """A router whose rewards are given: row i of the batch gets rewards[i]."""

    def __init__(self, rewards):
        self.rewards, self.i = rewards, 0

    def score(self, response, sample):
        r = self.rewards[self.i]
        self.i += 1
        return Scored(total=r, accuracy=r, values={"acc": r})


def test_each_phase_runs_alone_on_a_trajectory(processor, shard_root):
    batch, G = _batch(shard_root, 2), 2
    module = GRPOModule(partial(build_model, ModelConfig(), processor), processor, _Fixed([1.0, 0.0, 0.5, 0.5]), G=G, micro_batch_size=3,
                        max_new_tokens=4, adv_reweighting=True)
    module.model = build_model(ModelConfig(), processor).eval()
    ro = HFEngine().generate(module.model, processor, batch, G, 4, seed=0)
    traj = Trajectory(ro)
    module.score(traj)
    assert traj.rewards.tolist() == [1.0, 0.0, 0.5, 0.5]
    module.advantages(traj)
    assert traj.weights.tolist() == [1.0, 1.0, 1.0, 1.0]  # Eq. 6 at p = 0.5 in both groups
    assert traj.advantages[0] > 0 > traj.advantages[1] and traj.advantages[2:].abs().max() < 1e-6  # a tied group has no signal
    assert traj.chunks == [[0, 1, 2], [3]] and len(traj.inputs) == 2
    module.kl_coef = 0.0
    module.reference(traj)
    assert traj.old is None and traj.ref is None  # mu = 1 and no KL: nothing to compute


@pytest.mark.parametrize("share_prefill", [True, False])
def test_static_cache_gives_the_dynamic_caches_rollouts(processor, shard_root, share_prefill):
    """rollout.cache=static (preallocated, the shared prefill copied into it) samples the same tokens from the same seed
    as the growing cache, for image and text-only prompts; compile without a static cache is refused."""
    from m2r.data.schema import Sample

    stream = sample_stream(shard_urls(shard_root, "rl", ["spatial/count"]), shuffle_shards=False)
    batch = [x for _, x in zip(range(2), stream)]
    batch.append((Sample(id="t0", task="general/arithmetic", question="What is 3 + 2?", answer="5", answer_type="number"), []))
    model = build_model(ModelConfig(), processor).eval()
    dynamic = generate_rollouts(model, processor, batch, 3, 7, seed=4, share_prefill=share_prefill)
    static = generate_rollouts(model, processor, batch, 3, 7, seed=4, share_prefill=share_prefill, cache="static")
    assert torch.equal(dynamic.completion_ids, static.completion_ids) and dynamic.texts == static.texts
    assert HFEngine(cache="static").generate(model, processor, batch, 3, 7, seed=4).texts == HFEngine().generate(model, processor, batch, 3, 7, seed=4).texts
    with pytest.raises(ValueError, match="rollout.compile=true needs rollout.cache=static"):
        HFEngine(compile=True)
    with pytest.raises(ValueError, match="rollout.cache='paged'"):
        HFEngine(cache="paged")
