"""Advantages and loss agree with TRL's GRPOTrainer on identical inputs (TRL is a test dependency).

TRL generates the completions (its own rollout code) and scores them with a reward function
that returns fixed rewards; we compare its advantages with `group_advantages`, then feed TRL's
batch (same prompts, completions, masks, images, old and reference log-probs, beta, eps) to its
`_compute_loss` and to ours (`token_logps` + `policy_loss`), for mu = 1 and mu = 2.
"""

from __future__ import annotations

import pytest
import torch

from m2r.config import ModelConfig
from m2r.data.tasks import generate
from m2r.model.load import build_model
from m2r.rl.core import aggregation_normalizer, group_advantages, policy_loss, token_logps

pytestmark = pytest.mark.slow
trl = pytest.importorskip("trl")

G, MAX_LEN, TEMP = 4, 8, 0.9
REWARDS = [1.0, 0.0, 0.5, 0.25, 0.0, 0.0, 1.0, 1.0]
OURS = {"grpo": "sequence", "dapo": "token", "dr_grpo": "constant"}


@pytest.fixture(scope="module")
def trl_batch(processor, tmp_path_factory):
    from datasets import Dataset

    import copy

    torch.manual_seed(0)
    base = build_model(ModelConfig(), processor)
    rows = []
    for i in range(2):
        s, imgs = generate("spatial/count", i, 0, "t", 168, 0.0)
        rows.append({"prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": s.question}]}], "image": imgs[0]})
    ds = Dataset.from_list(rows)

    def fixed_rewards(prompts, completions, **kw):
        return REWARDS[: len(completions)]

    def trainer(loss_type: str, scale_rewards: str = "group", num_iterations: int = 1):
        """A TRL trainer on its own copy of the model: TRL patches a fused, temperature-scaled LM head into it."""
        model = copy.deepcopy(base)
        args = trl.GRPOConfig(
            output_dir=str(tmp_path_factory.mktemp("trl")), use_cpu=True, num_generations=G, per_device_train_batch_size=2 * G,
            max_completion_length=MAX_LEN, beta=0.0, epsilon=0.2, epsilon_high=0.28, loss_type=loss_type, scale_rewards=scale_rewards,
            num_iterations=num_iterations, temperature=TEMP, report_to=[], gradient_accumulation_steps=1,
            use_bias_correction_kl=False,  # TRL >= 1.x multiplies the KL by the ratio by default; DESIGN's loss is beta * k3
        )
        return trl.GRPOTrainer(model=model, reward_funcs=[fixed_rewards], args=args, train_dataset=ds, processing_class=processor), model

    inputs = [dict(r) for r in ds for _ in range(G)]
    tr, _ = trainer("grpo")
    out = tr._generate_and_score_completions(inputs)
    return base, trainer, inputs, out


@pytest.mark.parametrize("scale", ["group", "none"])
def test_advantages_match_trl(trl_batch, scale):
    _, trainer, inputs, out = trl_batch
    adv_trl = out["advantages"] if scale == "group" else trainer("grpo", scale_rewards="none")[0]._generate_and_score_completions(inputs)["advantages"]
    ours = group_advantages(torch.tensor(REWARDS), G, scale_std=scale == "group")
    assert torch.allclose(adv_trl.float(), ours, atol=1e-5), (adv_trl, ours)


@pytest.mark.parametrize("mu", [1, 2])
@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_loss_matches_trl(trl_batch, loss_type, mu, monkeypatch):
    """Same log-probs (one leaf tensor fed to both), rewards' advantages, old and reference
    log-probs, beta and eps: TRL's `_compute_loss` and ours give the same loss and gradient."""
    base, trainer, _, out = trl_batch
    tr, _ = trainer(loss_type, num_iterations=mu)
    tr.beta = 0.04  # built without a reference model; the reference log-probs are given below
    tr.current_gradient_accumulation_steps = 1  # set by TRL's training loop; one micro-batch here
    P = out["prompt_ids"].shape[1]
    prompt = {"input_ids": out["prompt_ids"], "attention_mask": out["prompt_mask"], "pixel_values": out["pixel_values"],
              "image_grid_thw": out["image_grid_thw"], "mm_token_type_ids": out["mm_token_type_ids"][:, :P]}
    with torch.no_grad():
        current = token_logps(base, prompt, out["completion_ids"], temperature=TEMP)  # [N, L]
    g = torch.Generator().manual_seed(1)
    batch = dict(out)
    batch["ref_per_token_logps"] = current - 0.3 * torch.rand(current.shape, generator=g)
    old = None
    if mu == 2:  # a second pass over the same rollouts: the sampling policy differs from the current one
        old = current + 0.4 * (torch.rand(current.shape, generator=g) - 0.5)
        batch["old_per_token_logps"] = old
    batch["advantages"] = torch.tensor([1.3, -1.0, 0.1, -0.4, -0.9, -0.9, 0.9, 0.9])
    mask = batch["completion_mask"]
    batch["num_items_in_batch"] = mask.sum()

    lp_trl = current.clone().requires_grad_()
    monkeypatch.setattr(tr, "_get_per_token_logps_and_entropies", lambda *a, **k: (lp_trl, torch.zeros_like(lp_trl), None))
    tr.model.train()
    loss_trl = tr._compute_loss(tr.model, batch)
    loss_trl.backward()

    lp = current.clone().requires_grad_()
    ours, _ = policy_loss(lp, old if old is not None else lp.detach(), batch["advantages"], mask, aggregation_normalizer(mask, OURS[loss_type], MAX_LEN),
                          eps_low=0.2, eps_high=0.28, beta=0.04, ref_logps=batch["ref_per_token_logps"])
    ours.backward()
    assert ours.item() == pytest.approx(loss_trl.item(), abs=1e-5), (loss_type, mu, ours.item(), loss_trl.item())
    assert torch.allclose(lp.grad, lp_trl.grad, atol=1e-5)
    assert lp.grad.abs().sum() > 0


def test_logprobs_equal_plain_transformers_and_near_trl(trl_batch):
    """Our log-probs equal the plain transformers computation; TRL's fused LM-head kernel differs
    from both by up to about 0.6% of the log-prob on this model, which is why the loss test feeds both sides one tensor."""
    base, trainer, _, out = trl_batch
    tr, model = trainer("grpo")
    P = out["prompt_ids"].shape[1]
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], 1)
    attn = torch.cat([out["prompt_mask"], out["completion_mask"]], 1)
    vis = {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}
    with torch.no_grad():
        trl_logps = tr._get_per_token_logps_and_entropies(model, ids, attn, out["completion_ids"].shape[1], num_images=out["num_images"], mm_token_type_ids=out["mm_token_type_ids"], **vis)[0]
        ours = token_logps(base, {"input_ids": out["prompt_ids"], "attention_mask": out["prompt_mask"], "mm_token_type_ids": out["mm_token_type_ids"][:, :P], **vis}, out["completion_ids"], temperature=TEMP)
        logits = base(input_ids=ids, attention_mask=attn, mm_token_type_ids=out["mm_token_type_ids"], **vis).logits[:, P - 1 : -1].float() / TEMP
        plain = torch.gather(torch.log_softmax(logits, -1), 2, out["completion_ids"][..., None]).squeeze(2)
    m = out["completion_mask"].bool()
    assert torch.allclose(ours[m], plain[m], atol=1e-6)
    # TRL's fused head drifts with the logits' scale: 0.024 at most (log-probs -4 to -9) at init std 0.08, a few 1e-3 at 0.02;
    # 0.035 (about 0.6% of a log-prob of -5.8) with the tokenizer of the generators' version 4, whose vocabulary differs.
    assert torch.allclose(trl_logps[m], plain[m], atol=1e-2, rtol=8e-3), ((trl_logps[m] - plain[m]).abs().max(), plain[m])
