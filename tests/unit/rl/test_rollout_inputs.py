"""Rollout prompts: the processor runs once per prompt and its G copies are selected rows, equal to processing G
copies; a prompt over the GRPO prompt-length bound stops the step with its id."""

from __future__ import annotations

import pytest
import torch

from m2r.config import ModelConfig
from m2r.data.collate import M2_SYSTEM_PROMPT, build_messages
from m2r.data.shards import sample_stream, shard_urls
from m2r.model.load import build_model, enable_checkpointing
from m2r.rl.rollout import generate_rollouts, prompt_inputs


def _batch(shard_root, n=2):
    stream = sample_stream(shard_urls(shard_root, "rl", ["spatial/count", "general/word_problem"]), shuffle_shards=False)
    return [x for _, x in zip(range(n), stream)]


def test_g_copies_equal_processing_each_copy(processor, shard_root):
    batch = _batch(shard_root)
    G = 3
    texts, images = [], []
    for sample, imgs in batch:  # the old way: G copies through the processor
        text = processor.apply_chat_template(build_messages(sample, len(imgs), M2_SYSTEM_PROMPT), tokenize=False, add_generation_prompt=True)
        texts += [text] * G
        images += list(imgs) * G
    side = processor.tokenizer.padding_side
    processor.tokenizer.padding_side = "left"
    try:
        direct = dict(processor(text=texts, images=images or None, padding=True, return_tensors="pt"))
    finally:
        processor.tokenizer.padding_side = side
    once = prompt_inputs(processor, batch, G)
    assert set(once) == set(direct)
    for k in direct:
        assert torch.equal(once[k], direct[k]), k


def test_prompt_over_the_bound_is_an_error_naming_it(processor, shard_root):
    batch = _batch(shard_root, 1)
    model = build_model(ModelConfig(), processor).eval()
    ro = generate_rollouts(model, processor, batch, G=2, max_new_tokens=2, seed=0, max_prompt_length=100_000)
    n = ro.prompt_lengths[0]
    assert n == int(ro.prompt_inputs["attention_mask"][0].sum())
    with pytest.raises(ValueError, match=rf"{batch[0][0].id}.*{n} tokens, over grpo.module.max_prompt_length={n - 1}"):
        generate_rollouts(model, processor, batch, G=2, max_new_tokens=2, seed=0, max_prompt_length=n - 1)


def test_prefill_and_vision_once_per_prompt_with_the_unshared_log_probs(processor, shard_root):
    """Each prompt is prefilled once (the vision tower runs once per prompt, not G times) and its cache repeated to G
    rows; the responses' log-probs under the policy equal those of the unshared path to 1e-5, and greedy decoding
    gives the same tokens."""
    from m2r.rl.core import token_logps

    batch, G = _batch(shard_root, 2), 4
    model = build_model(ModelConfig(), processor).eval()
    calls = []
    handle = model.model.visual.register_forward_hook(lambda m, a, out: calls.append(a[0].shape[0]))  # image patches encoded
    try:
        shared = generate_rollouts(model, processor, batch, G, 8, seed=3)
        n_shared = sum(calls)
        calls.clear()
        plain = generate_rollouts(model, processor, batch, G, 8, seed=3, share_prefill=False)
        n_plain = sum(calls)
    finally:
        handle.remove()
    images = sum(len(imgs) for _, imgs in batch)
    assert images and n_shared > 0 and n_plain == G * n_shared  # the B prompts' images once, not their B x G copies
    with torch.no_grad():
        a = token_logps(model, shared.prompt_inputs, shared.completion_ids)
        b = token_logps(model, plain.prompt_inputs, shared.completion_ids)
    assert torch.allclose(a, b, atol=1e-5)
    assert n_plain == int(shared.prompt_inputs["image_grid_thw"].prod(-1).sum())  # every row's copy, in the plain path
    # greedy (temperature -> 0) decoding: the same tokens from the shared cache as from the full prefill
    g1 = generate_rollouts(model, processor, batch, G, 8, temperature=1e-4, seed=0)
    g2 = generate_rollouts(model, processor, batch, G, 8, temperature=1e-4, seed=0, share_prefill=False)
    assert torch.equal(g1.completion_ids, g2.completion_ids)


def test_log_prob_passes_encode_each_prompts_images_once_with_the_same_values_and_gradients(processor, shard_root):
    from m2r.rl.core import token_logps

    batch, G = _batch(shard_root, 2), 3
    model = build_model(ModelConfig(), processor).train()
    ro = generate_rollouts(model, processor, batch, G, 6, seed=1)
    calls = []
    handle = model.model.visual.register_forward_hook(lambda m, a, out: calls.append(a[0].shape[0]))
    try:
        shared = token_logps(model, ro.prompt_inputs, ro.completion_ids)
        shared.sum().backward()
        n_shared = sum(calls)
    finally:
        handle.remove()
    g_shared = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    import m2r.rl.core as core

    real = core._share_images
    core._share_images = lambda backbone, model, extra: extra  # the unshared path
    try:
        calls.clear()
        handle = model.model.visual.register_forward_hook(lambda m, a, out: calls.append(a[0].shape[0]))
        plain = token_logps(model, ro.prompt_inputs, ro.completion_ids)
        plain.sum().backward()
        n_plain = sum(calls)
        handle.remove()
    finally:
        core._share_images = real
    assert n_plain == G * n_shared > 0  # each prompt's images once, not once per row
    assert torch.allclose(shared, plain, atol=1e-5)
    for k, p in model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(g_shared[k], p.grad, atol=1e-5, rtol=1e-4), k
    assert any("visual" in k for k in g_shared)  # the vision tower is trained through the shared features


def test_text_only_prompts_after_an_image_batch_of_another_size(processor, shard_root):
    """Qwen2.5-VL keeps its rope offsets between calls; a text-only prefill sets none, so the previous batch's (another
    size) must not be reused: the embedded pipeline's difficulty step crashed on exactly this."""
    from m2r.data.schema import Sample

    model = build_model(ModelConfig(), processor).eval()
    generate_rollouts(model, processor, _batch(shard_root, 2), 4, 3, seed=0)  # offsets for 2 prompts
    text = [(Sample(id=f"t{i}", task="general/arithmetic", question=f"What is {i} + 2?", answer=str(i + 2), answer_type="number"), []) for i in range(3)]
    shared = generate_rollouts(model, processor, text, 4, 3, temperature=1e-4, seed=0)
    plain = generate_rollouts(model, processor, text, 4, 3, temperature=1e-4, seed=0, share_prefill=False)
    assert torch.equal(shared.completion_ids, plain.completion_ids)


def _mixed_batch(shard_root):
    """Two image prompts and a text-only one: the shared prefill must give each its own positions."""
    from m2r.data.schema import Sample

    return [*_batch(shard_root, 2), (Sample(id="t0", task="general/arithmetic", question="What is 3 + 2?", answer="5", answer_type="number"), [])]


@pytest.mark.parametrize("rows", [list(range(9)), [2, 3, 4, 5, 7]], ids=["whole-groups", "split-groups"])
def test_log_prob_passes_run_each_prompt_once_with_the_same_values_and_gradients(processor, shard_root, rows):
    """With the micro-batch's distinct prompts given, each prompt (its images included) runs through the backbone once
    and its keys and values serve its rows: the log-probs and every gradient equal running each row whole (1e-5),
    for groups whole or cut by the micro-batch, image and text-only prompts mixed; the vision tower sees each
    prompt's patches once."""
    from m2r.rl.core import shared_prompt_hidden, token_logps
    from m2r.rl.rollout import select_rows

    batch, G = _mixed_batch(shard_root), 3
    model = build_model(ModelConfig(), processor).train()
    ro = generate_rollouts(model, processor, batch, G, 6, seed=1)
    x = select_rows(ro.prompt_inputs, rows, ro.images_per_row)
    firsts = list(dict.fromkeys(r // G for r in rows))
    prompts = (select_rows(ro.prompt_inputs, [b * G for b in firsts], ro.images_per_row), torch.tensor([firsts.index(r // G) for r in rows]))
    ids = ro.completion_ids[rows]
    with torch.no_grad():
        assert shared_prompt_hidden(model, prompts[0], prompts[1], ids) is not None  # the shared path is the one taken

    def run(p):
        calls = []
        handle = model.model.visual.register_forward_hook(lambda m, a, out: calls.append(a[0].shape[0]))
        try:
            model.zero_grad()
            lp = token_logps(model, x, ids, 0.7, 4, p)  # chunks of 4 positions: the checkpointed head too
            (lp * torch.linspace(0.5, 2.0, lp.numel()).view_as(lp)).sum().backward()
        finally:
            handle.remove()
        return lp.detach(), {k: q.grad.clone() for k, q in model.named_parameters() if q.grad is not None}, sum(calls)

    shared, g_shared, n_shared = run(prompts)
    plain, g_plain, _ = run(None)
    assert torch.allclose(shared, plain, atol=1e-5), (shared - plain).abs().max()
    assert g_shared.keys() == g_plain.keys() and any("visual" in k for k in g_shared)
    for k in g_plain:
        assert torch.allclose(g_shared[k], g_plain[k], atol=1e-5, rtol=1e-4), k
    image_prompts = [b for b in firsts if batch[b][1]]
    assert n_shared == int(prompts[0]["image_grid_thw"].prod(-1).sum()) and len(prompts[0]["image_grid_thw"]) == len(image_prompts)
    with torch.no_grad():  # the reference pass (no gradients) takes the same path
        assert torch.allclose(token_logps(model.eval(), x, ids, 1.0, 256, prompts), token_logps(model, x, ids), atol=1e-5)


def test_shared_prompts_fall_back_where_the_cache_cannot_carry_gradients(processor, shard_root):
    """transformers' checkpointed layers drop the KV cache while training: under gradient checkpointing the rows
    run whole (the same values), never a continuation that silently lost its prompt."""
    from m2r.rl.core import shared_prompt_hidden, token_logps
    from m2r.rl.rollout import select_rows

    batch, G = _batch(shard_root, 2), 2
    model = build_model(ModelConfig(), processor).train()
    ro = generate_rollouts(model, processor, batch, G, 4, seed=2)
    prompts = (select_rows(ro.prompt_inputs, [0, G], ro.images_per_row), torch.tensor([0, 0, 1, 1]))
    with torch.no_grad():
        expected = token_logps(model, ro.prompt_inputs, ro.completion_ids)
    enable_checkpointing(model)
    assert shared_prompt_hidden(model, prompts[0], prompts[1], ro.completion_ids) is None
    got = token_logps(model, ro.prompt_inputs, ro.completion_ids, prompts=prompts)
    assert torch.allclose(got.detach(), expected, atol=1e-5)
    got.sum().backward()


def test_shared_prefill_decodes_left_padded_text_prompts_at_their_positions(processor, monkeypatch):
    """Text-only prompts of different lengths (left padding): the first two decode steps' scores from the shared prefill
    equal those of the full prefill (the padded rows used to continue `pad` positions off)."""
    from m2r.data.schema import Sample
    from m2r.rl import rollout

    model = build_model(ModelConfig(), processor).eval()
    text = [(Sample(id=f"t{i}", task="general/arithmetic", question=q, answer="1", answer_type="number"), [])
            for i, q in enumerate(["What is 3 + 2?", "A train leaves at noon going 40 km per hour; a second train leaves an hour "
                                   "later at 60 km per hour. After how many hours does the second catch up?"])]
    seen = []
    real = rollout.RolloutSampler.__call__
    monkeypatch.setattr(rollout.RolloutSampler, "__call__", lambda self, ids, scores: (seen.append(scores.clone()), real(self, ids, scores))[1])
    shared = generate_rollouts(model, processor, text, 3, 2, temperature=1e-4, seed=0)
    first = seen[:]
    seen.clear()
    generate_rollouts(model, processor, text, 3, 2, temperature=1e-4, seed=0, share_prefill=False)
    pad = int((shared.prompt_inputs["attention_mask"] == 0).sum(dim=1).max())
    assert pad > 10 and len(first) == len(seen) == 2
    for a, b in zip(first, seen):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
