"""Rollout prompts: the processor runs once per prompt and its G copies are selected rows, equal to processing G
copies; a prompt over the GRPO prompt-length bound stops the step with its id."""

from __future__ import annotations

import pytest
import torch

from m2r.config import ModelConfig
from m2r.data.collate import M2_SYSTEM_PROMPT, build_messages
from m2r.data.shards import sample_stream, shard_urls
from m2r.model.load import build_model
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
