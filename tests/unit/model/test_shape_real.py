"""Shape-real models (`model.source=random`): the released Qwen2.5-VL dimensions with random weights.

Models are built on the `meta` device (no memory, no init), so the 3B and 7B cost milliseconds.
"""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from conftest import compose
from m2r.config import ModelConfig
from m2r.model.load import ModelConfigError, build_model, load_processor
from m2r.model.shapes import shape_model_config

# name -> (text dims, tie_word_embeddings, parameters of the released checkpoint)
RELEASED = {
    "qwen2_5_vl_3b_random": (
        {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2, "max_position_embeddings": 128000},
        True,
        3.754e9,
    ),
    "qwen2_5_vl_7b_random": (
        {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 128000},
        False,
        8.292e9,
    ),
}


def _model_cfg(name: str, tmp_path) -> ModelConfig:
    # A 1-sample-per-task tokenizer corpus: the tokenizer's size does not matter here, its ids do.
    cfg = compose([f"model={name}", "model.tiny.corpus_samples_per_task=1"], tmp_path, tmp_path)
    return OmegaConf.to_object(cfg.model)


@pytest.fixture(scope="module")
def random_processor(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shape_real")
    return load_processor(_model_cfg("qwen2_5_vl_7b_random", tmp), tmp / "cache")


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_config_has_the_released_dimensions(name, tmp_path, random_processor):
    cfg = _model_cfg(name, tmp_path)
    assert cfg.source == "random" and cfg.dtype == "float32" and cfg.gradient_checkpointing
    assert (cfg.min_pixels, cfg.max_pixels) == (3136, 12845056)
    config = shape_model_config(cfg.shape, random_processor.tokenizer)
    text, tied, _ = RELEASED[name]
    assert {k: getattr(config.text_config, k) for k in text} == text
    assert config.text_config.rope_parameters["rope_theta"] == 1e6 and config.text_config.rope_parameters["mrope_section"] == [16, 24, 24]
    assert config.tie_word_embeddings is tied
    v = config.vision_config
    assert (v.depth, v.hidden_size, v.intermediate_size, v.num_heads) == (32, 1280, 3420, 16)
    assert (v.patch_size, v.spatial_merge_size, v.temporal_patch_size, v.window_size) == (14, 2, 2, 112)
    assert list(v.fullatt_block_indexes) == [7, 15, 23, 31] and v.out_hidden_size == text["hidden_size"]


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_build_model_gives_the_released_parameter_count(name, tmp_path, random_processor):
    cfg = _model_cfg(name, tmp_path)
    with torch.device("meta"):
        model = build_model(cfg, random_processor)
    _, tied, released = RELEASED[name]
    n = sum(p.numel() for p in model.parameters())  # tied weights count once
    assert abs(n - released) / released < 0.01, f"{name}: {n / 1e9:.3f}B parameters, released {released / 1e9:.3f}B"
    assert (model.lm_head.weight is model.get_input_embeddings().weight) is tied
    tok = random_processor.tokenizer
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>") == random_processor.image_token_id
    assert model.config.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>") == random_processor.video_token_id
    assert model.config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert model.config.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    assert (model.generation_config.eos_token_id, model.generation_config.pad_token_id) == (tok.eos_token_id, tok.pad_token_id)
    assert model.is_gradient_checkpointing


def test_processor_gives_the_released_image_token_count(random_processor):
    # 448 = 32 patches of 14 per side -> 32*32 patches -> 256 tokens after the 2x2 merge.
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}]
    text = random_processor.apply_chat_template(messages, add_generation_prompt=True)
    out = random_processor(text=[text], images=[Image.new("RGB", (448, 448), "white")], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 32, 32]]
    assert out["pixel_values"].shape == (1024, 3 * 2 * 14 * 14)
    assert (out["input_ids"] == random_processor.image_token_id).sum().item() == 256


def test_unknown_shape_says_which_exist(random_processor):
    for shape in (None, "72b"):
        with pytest.raises(ModelConfigError, match=r"model.shape=.*3b, 7b"):
            build_model(ModelConfig(name="x", source="random", shape=shape), random_processor)
    with pytest.raises(ModelConfigError, match="use tiny, random or pretrained"):
        load_processor(ModelConfig(source="randm"), "/tmp")
