"""GRPO math against numbers computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from m2r.rl.core import advantage_weights, aggregation_normalizer, cosine_kl_coef, group_advantages, k3_kl, policy_loss
from m2r.rl.rollout import repetition_loop, response_mask


def test_group_advantages_by_hand():
    # Group (3, 0, 0): mean 1, unbiased std sqrt((4 + 1 + 1) / 2) = sqrt(3).
    adv = group_advantages(torch.tensor([3.0, 0.0, 0.0, 1.0, 1.0, 1.0]), G=3)
    s = math.sqrt(3) + 1e-4
    assert adv.tolist() == pytest.approx([2 / s, -1 / s, -1 / s, 0.0, 0.0, 0.0], abs=1e-6)
    # Dr.GRPO: centred only.
    assert group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), G=2, scale_std=False).tolist() == [0.5, -0.5, -0.5, 0.5]
    # Group (1, 0): std sqrt(0.5).
    assert group_advantages(torch.tensor([1.0, 0.0]), G=2).tolist() == pytest.approx([0.5 / (math.sqrt(0.5) + 1e-4), -0.5 / (math.sqrt(0.5) + 1e-4)], abs=1e-6)


def test_eq6_weights_by_hand():
    # p = 0.5, 0.25, 0.0 -> 4 p (1 - p) = 1.0, 0.75, 0.0, each repeated G times.
    w = advantage_weights(torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]), G=4, sigma=4.0)
    assert w.tolist() == pytest.approx([1.0] * 4 + [0.75] * 4 + [0.0] * 4)
    assert advantage_weights(torch.tensor([0.3, 0.5]), G=2, sigma=2.0).tolist() == pytest.approx([2 * 0.4 * 0.6] * 2)


def test_cosine_schedule_endpoints_and_midpoint():
    assert cosine_kl_coef(0, 100, 0.01, 0.0) == pytest.approx(0.01)
    assert cosine_kl_coef(50, 100, 0.01, 0.0) == pytest.approx(0.005)
    assert cosine_kl_coef(100, 100, 0.01, 0.0) == pytest.approx(0.0, abs=1e-12)
    assert cosine_kl_coef(25, 100, 0.01, 0.0) == pytest.approx(0.01 * (1 + math.cos(math.pi / 4)) / 2)
    assert cosine_kl_coef(50, 100, 0.02, 0.01) == pytest.approx(0.015)
    assert cosine_kl_coef(500, 100, 0.01, 0.001) == pytest.approx(0.001)  # past T: stays at beta_min


def test_k3_kl_by_hand():
    kl = k3_kl(torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25])))
    assert kl.item() == pytest.approx(0.5 - math.log(0.5) - 1)  # d = log 0.5: exp(d) - d - 1 = 0.193147
    assert k3_kl(torch.tensor([-1.0]), torch.tensor([-1.0])).item() == 0.0


ADV = torch.tensor([1.0, -2.0])
MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])


@pytest.mark.parametrize("aggregation, expected", [("token", -0.25), ("sequence", 0.5), ("constant", -0.125)])
def test_loss_aggregations_by_hand(aggregation, expected):
    # ratio 1 and no KL: per-token loss = -A. Row 0: three tokens of -1; row 1: one token of +2.
    logps = torch.zeros(2, 3)
    divisor = aggregation_normalizer(MASK, aggregation, max_len=4)
    loss, _ = policy_loss(logps, logps, ADV, MASK, divisor)
    # token: (-3 + 2) / 4 tokens; sequence: mean(-3/3, 2/1) = 0.5; constant: (-3 + 2) / (2 rows x 4)
    assert loss.item() == pytest.approx(expected)
    # Micro-batches with the whole batch's divisor add up to the full-batch loss.
    parts = sum(policy_loss(logps[i : i + 1], logps[i : i + 1], ADV[i : i + 1], MASK[i : i + 1], divisor[i : i + 1])[0] for i in range(2))
    assert parts.item() == pytest.approx(expected)


def test_clipping_and_kl_term_by_hand():
    logps = torch.tensor([[0.5], [0.5]])
    old = torch.zeros(2, 1)  # ratio e^0.5 = 1.6487
    adv = torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 1)
    loss, st = policy_loss(logps, old, adv, mask, aggregation_normalizer(mask, "token", 1), eps_low=0.2, eps_high=0.2)
    # A = 1: min(1.6487, 1.2) -> loss -1.2; A = -1: min(-1.6487, -1.2) = -1.6487 -> loss 1.6487. Mean over 2 tokens.
    assert loss.item() == pytest.approx((-1.2 + math.exp(0.5)) / 2, abs=1e-6)
    assert st["clip_frac"].item() == pytest.approx(0.5)  # only the A > 0 token is clipped
    ref = torch.tensor([[0.0], [0.0]])
    loss_kl, st = policy_loss(logps, old, adv, mask, aggregation_normalizer(mask, "token", 1), beta=0.1, ref_logps=ref)
    kl = math.exp(-0.5) + 0.5 - 1
    assert loss_kl.item() == pytest.approx(loss.item() + 0.1 * kl, abs=1e-6) and st["kl"].item() == pytest.approx(kl, abs=1e-6)


def test_gradient_of_the_surrogate_is_advantage_weighted():
    logps = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    mask = torch.tensor([[1, 1]])
    loss, _ = policy_loss(logps, logps.detach(), torch.tensor([3.0]), mask, aggregation_normalizer(mask, "token", 2))
    loss.backward()
    assert logps.grad[0].tolist() == pytest.approx([-1.5, -1.5])  # -A / tokens, per token


def test_response_mask_and_truncation():
    ids = torch.tensor([[5, 9, 7, 7], [5, 6, 7, 8], [9, 1, 9, 1]])
    mask, truncated = response_mask(ids, [9])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert truncated.tolist() == [False, True, False]


def test_repetition_loop():
    assert repetition_loop("the answer is " + "blah blah " * 20)
    assert not repetition_loop("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty twenty-one twenty-two twenty-three twenty-four")
