"""The rollout sampler draws from the policy's own distribution: softmax(logits / T) cut to top-p, vision tokens and
early end tokens excluded, nothing from the checkpoint's generation settings."""

from __future__ import annotations

import pytest
import torch

from m2r.config import ModelConfig
from m2r.data.shards import sample_stream, shard_urls
from m2r.model.load import build_model
from m2r.rl.rollout import RolloutSampler, generate_rollouts


def _draws(sampler: RolloutSampler, logits: torch.Tensor, n: int, generated: int = 5) -> torch.Tensor:
    """n draws from one row of logits, as token ids [n]."""
    scores = sampler(torch.zeros(n, sampler.prompt_length + generated, dtype=torch.long), logits.expand(n, -1).clone())
    assert bool(((scores == 0).sum(dim=1) == 1).all()) and bool((scores[scores != 0] == float("-inf")).all())  # one token left per row
    return scores.argmax(dim=1)


def test_draws_follow_the_tempered_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 0.5, -1.0, 1.0, 0.0, -3.0]])
    for T in (1.0, 0.7, 1.5):
        n = 200_000
        freq = torch.bincount(_draws(RolloutSampler(T, 1.0, [], [], 0, 3), logits, n), minlength=6).double() / n
        expected = torch.softmax(logits[0].double() / T, dim=0)
        # 5 standard errors of a binomial proportion at n = 200k is under 0.006
        assert torch.allclose(freq, expected, atol=5 * (expected * (1 - expected) / n).sqrt().max().item() + 1e-4), (T, freq, expected)


def test_top_p_keeps_the_smallest_set_that_reaches_the_mass_in_proportion():
    torch.manual_seed(1)
    p = torch.tensor([0.5, 0.25, 0.15, 0.07, 0.03])
    logits = p.log()[None]
    n = 100_000
    freq = torch.bincount(_draws(RolloutSampler(1.0, 0.8, [], [], 0, 3), logits, n), minlength=5).double() / n
    # 0.5 + 0.25 = 0.75 < 0.8, so the third token is kept; the last two never are
    assert freq[3] == 0 and freq[4] == 0
    kept = p[:3].double() / p[:3].sum()
    assert torch.allclose(freq[:3], kept, atol=0.01), freq
    # a top_p below the first token's mass keeps only that token
    assert bool((_draws(RolloutSampler(1.0, 0.3, [], [], 0, 3), logits, 1000) == 0).all())


def test_banned_tokens_and_end_tokens_before_the_minimum_are_never_drawn():
    torch.manual_seed(2)
    logits = torch.tensor([[5.0, 5.0, 0.0, 5.0]])  # 0 and 3 are the likeliest
    sampler = RolloutSampler(1.0, 1.0, banned=[0], eos=[3], min_new_tokens=4, prompt_length=10)
    early = _draws(sampler, logits, 5000, generated=3)  # 3 new tokens so far: the end token is still banned
    assert set(early.tolist()) == {1, 2}
    late = _draws(sampler, logits, 5000, generated=4)
    assert 0 not in late.tolist() and 3 in late.tolist()


@pytest.mark.parametrize("u", [0.0, 1.0 - 2**-24])
def test_a_zero_probability_token_is_never_drawn_at_the_ends_of_the_uniform(monkeypatch, u):
    """The draw is 1 - u scaled to the total: u = 0 lands on the total, u near 1 just above 0. Neither may pick a token
    whose probability is 0 (banned first or last ids, the flat parts of the CDF)."""
    logits = torch.tensor([[0.0, 1.0, 2.0, 0.0]])
    sampler = RolloutSampler(1.0, 1.0, banned=[0, 3], eos=[], min_new_tokens=0, prompt_length=1)
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.full(a[:2], u, dtype=k.get("dtype", torch.float32)))
    token = _draws(sampler, logits, 4).unique().tolist()
    assert token in ([1], [2])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="temperature=0"):
        RolloutSampler(0.0, 1.0, [], [], 0, 1)
    with pytest.raises(ValueError, match="top_p=1.5"):
        RolloutSampler(1.0, 1.5, [], [], 0, 1)


def test_checkpoint_generation_settings_do_not_change_the_rollouts(processor, shard_root):
    """A released checkpoint's generation_config.json (repetition penalty, top_k=1, bad words, a minimum length) must
    not reach the rollouts: the same seed gives the same responses with and without them, and the config is kept."""
    stream = sample_stream(shard_urls(shard_root, "rl", ["spatial/count"]), shuffle_shards=False)
    batch = [next(iter(stream))]
    model = build_model(ModelConfig(), processor).eval()
    plain = generate_rollouts(model, processor, batch, G=4, max_new_tokens=12, seed=3)
    gc = model.generation_config
    gc.repetition_penalty, gc.top_k, gc.no_repeat_ngram_size, gc.min_new_tokens = 50.0, 1, 1, 12
    gc.bad_words_ids = [[int(t)] for t in plain.completion_ids[0, :3]]
    tuned = generate_rollouts(model, processor, batch, G=4, max_new_tokens=12, seed=3)
    assert torch.equal(plain.completion_ids, tuned.completion_ids)
    assert model.generation_config is gc and gc.repetition_penalty == 50.0
    forced = generate_rollouts(model, processor, batch, G=4, max_new_tokens=12, seed=3, min_new_tokens=12)
    assert bool(forced.completion_mask.all()) and bool(forced.truncated.all())  # no end token before the 12th


def test_a_row_with_nothing_to_sample_is_an_error_not_a_token():
    """NaN logits, or every token banned: transformers' multinomial raised here; the sampler must not emit an id."""
    sampler = RolloutSampler(1.0, 1.0, banned=[0, 1], eos=[], min_new_tokens=0, prompt_length=1)
    with pytest.raises(ValueError, match=r"rollout rows \[1\] have no token to sample"):
        sampler(torch.zeros(2, 3, dtype=torch.long), torch.tensor([[0.0, 1.0, 2.0], [float("nan")] * 3]))
    with pytest.raises(ValueError, match=r"rollout rows \[0, 1\]"):
        RolloutSampler(1.0, 1.0, banned=[0, 1, 2], eos=[], min_new_tokens=0, prompt_length=1)(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))
