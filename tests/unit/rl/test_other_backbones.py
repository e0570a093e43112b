"""The rollout and log-prob shortcuts on other Qwen-VL backbones (tiny, built from config with the tiny processor's
token ids): Qwen2-VL and Qwen3-VL take the shared-prompt pass with the values of whole rows; Qwen3.5, whose cache
holds linear-attention layers that cannot be row-selected, falls back to whole rows instead of crashing; Qwen3-VL's
per-layer (deepstack) image features are not dropped by the per-pass image sharing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from m2r.config import ModelConfig
from m2r.data.schema import Sample
from m2r.model.load import build_model
from m2r.model.tiny import special_token_ids
from m2r.rl.core import shared_prompt_hidden, token_logps
from m2r.rl.rollout import generate_rollouts, select_rows


def _image(seed: int, w: int = 56, h: int = 56) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 255).astype("uint8"))


def _sample(i: int, question: str, n: int) -> Sample:
    return Sample(id=f"s{i}", task="spatial/count", question=question, answer="3", answer_type="number", images=[f"img{k}.png" for k in range(n)])


def _config(kind: str, tok):
    hd = 16
    half = hd // 2
    mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    text = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                head_dim=hd, max_position_embeddings=4096, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.pad_token_id)
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope}
    ids = special_token_ids(tok)
    if kind == "qwen2_vl":
        from transformers import Qwen2VLConfig

        return Qwen2VLConfig(text_config={**text, "rope_parameters": rope}, vision_config=dict(
            depth=1, embed_dim=32, hidden_size=64, num_heads=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, mlp_ratio=2), **ids)
    vision3 = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14, spatial_merge_size=2,
                   temporal_patch_size=2, num_position_embeddings=64)
    if kind == "qwen3_vl":
        from transformers import Qwen3VLConfig

        return Qwen3VLConfig(text_config={**text, "rope_parameters": {**rope, "mrope_interleaved": True}},
                             vision_config={**vision3, "deepstack_visual_indexes": [0]}, **ids)
    from transformers import Qwen3_5Config

    return Qwen3_5Config(text_config={**text, "rope_parameters": {**rope, "mrope_interleaved": True, "partial_rotary_factor": 1.0},
                                      "layer_types": ["linear_attention", "full_attention"], "linear_key_head_dim": 16, "linear_value_head_dim": 16,
                                      "linear_num_key_heads": 2, "linear_num_value_heads": 4}, vision_config={**vision3, "depth": 1}, **ids)


@pytest.fixture(scope="module")
def rollouts(processor):
    """Rollouts of the tiny Qwen2.5-VL on a text-only prompt, a two-image prompt and a long one-image prompt (left
    padding of several lengths); the other backbones score these token ids."""
    torch.manual_seed(0)
    base = build_model(ModelConfig(), processor).eval()
    batch = [(_sample(0, "What is 2 + 2?", 0), []), (_sample(1, "How many?", 2), [_image(0), _image(1, 84, 56)]),
             (_sample(2, "Count " + "the " * 10, 1), [_image(2, 112, 56)])]
    return generate_rollouts(base, processor, batch, 2, 5, seed=1)


def _model(kind: str, processor):
    pytest.importorskip("transformers", minversion="5.0")
    from transformers import AutoModelForImageTextToText

    try:
        config = _config(kind, processor.tokenizer)
    except ImportError:
        pytest.skip(f"this transformers has no {kind}")
    torch.manual_seed(0)
    return AutoModelForImageTextToText.from_config(config, dtype=torch.float32).train()


def _prompts(ro, rows, G=2):
    firsts = list(dict.fromkeys(r // G for r in rows))
    return select_rows(ro.prompt_inputs, [b * G for b in firsts], ro.images_per_row), torch.tensor([firsts.index(r // G) for r in rows])


def _grads(model, fn):
    model.zero_grad()
    lp = fn()
    lp.sum().backward()
    return lp.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["qwen2_vl", "qwen3_vl"])
def test_shared_prompt_pass_equals_whole_rows_on_other_qwen_vl_backbones(processor, rollouts, kind):
    model = _model(kind, processor)
    for rows in (list(range(6)), [1, 2, 3, 5]):
        x, ids, prompts = select_rows(rollouts.prompt_inputs, rows, rollouts.images_per_row), rollouts.completion_ids[rows], _prompts(rollouts, rows)
        with torch.no_grad():
            assert shared_prompt_hidden(model, prompts[0], prompts[1], ids) is not None
        shared, g_shared = _grads(model, lambda: token_logps(model, x, ids, 1.0, 256, prompts))
        whole, g_whole = _grads(model, lambda: token_logps(model, x, ids))
        assert torch.allclose(shared, whole, atol=1e-5), (kind, rows, (shared - whole).abs().max())
        for k in g_whole:
            assert torch.allclose(g_shared[k], g_whole[k], atol=1e-5, rtol=1e-4), (kind, k)


def test_linear_attention_hybrid_falls_back_to_whole_rows(processor, rollouts):
    model = _model("qwen3_5", processor)
    rows = list(range(6))
    x, ids, prompts = select_rows(rollouts.prompt_inputs, rows, rollouts.images_per_row), rollouts.completion_ids, _prompts(rollouts, rows)
    with torch.no_grad():
        assert shared_prompt_hidden(model, prompts[0], prompts[1], ids) is None
    shared, _ = _grads(model, lambda: token_logps(model, x, ids, 1.0, 256, prompts))
    with torch.no_grad():
        assert torch.allclose(shared, token_logps(model, x, ids), atol=1e-6)


def test_deepstack_features_survive_repeated_images(processor, rollouts):
    """Rows of one prompt repeat its images; Qwen3-VL's image features carry per-layer (deepstack) parts that the
    per-pass sharing does not rebuild, so those rows are encoded whole rather than failing."""
    model = _model("qwen3_vl", processor)
    rows = [2, 3, 4, 5]  # the image prompts, each twice
    x, ids = select_rows(rollouts.prompt_inputs, rows, rollouts.images_per_row), rollouts.completion_ids[rows]
    lp, grads = _grads(model, lambda: token_logps(model, x, ids))
    assert torch.isfinite(lp).all() and any("visual" in k for k in grads)
