"""The tiny model and processor, loading rules, freezing and LoRA."""

from __future__ import annotations

import pytest
import torch

from m2r.config import LoraConfig, ModelConfig, TinyModelConfig
from m2r.model.load import ModelConfigError, build_model, load_processor, resolve_attn_implementation
from m2r.model.tiny import SPECIAL_TOKENS, TAG_TOKENS, train_tokenizer


def test_tokenizer_has_chat_and_tag_tokens(processor):
    tok = processor.tokenizer
    for t in SPECIAL_TOKENS + TAG_TOKENS:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids[0]) == t
    text = "<think>\n12 + 30 = 42</think><answer>\\boxed{42}</answer>"
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text  # tags survive decoding
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_tokenizer_training_is_deterministic():
    cfg = ModelConfig(tiny=TinyModelConfig(corpus_samples_per_task=3, vocab_size=400))
    a, b = train_tokenizer(cfg), train_tokenizer(cfg)
    assert a.get_vocab() == b.get_vocab()
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()


def test_processor_is_cached(model_cfg, cache_dir, processor):
    again = load_processor(model_cfg, cache_dir)
    assert again.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    assert len(list((cache_dir / "tiny_processor").iterdir())) == 1


def test_tiny_model_forward_and_freezing(model_cfg, processor):
    cfg = ModelConfig(freeze_vision=True, freeze_projector=False)
    model = build_model(cfg, processor)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all("visual" in n and "merger" not in n for n in frozen)
    assert any("merger" in n and p.requires_grad for n, p in model.named_parameters())
    assert model.config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    with pytest.raises(ModelConfigError, match="nothing would train"):
        build_model(ModelConfig(freeze_vision=True, freeze_projector=True, freeze_language=True), processor)


@pytest.mark.parametrize("std", [0.02, 0.08])
def test_tiny_init_scale_reaches_both_towers(processor, std):
    # model.tiny.initializer_range sets the random init of the language model, the vision tower and
    # the merger alike (HF reads a separate value from each sub-config: one left at 0.02 is a bug).
    model = build_model(ModelConfig(tiny=TinyModelConfig(initializer_range=std)), processor)
    weights = {n: p for n, p in model.named_parameters() if p.dim() >= 2}
    for part in ["visual.patch_embed", "visual.blocks.0.attn.qkv", "visual.merger", "embed_tokens", "layers.0.self_attn.q_proj", "layers.0.mlp"]:
        stds = [float(p.detach().std()) for n, p in weights.items() if part in n]
        assert stds and all(abs(s - std) < 0.15 * std for s in stds), (part, stds)


def test_lora_wraps_attention(processor):
    model = build_model(ModelConfig(lora=LoraConfig(enabled=True, r=4, alpha=8)), processor)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_missing_path_says_how_to_get_a_checkpoint(processor):
    with pytest.raises(ModelConfigError, match=r"needs model.path=.*never downloads.*model=tiny_qwen2_5_vl"):
        build_model(ModelConfig(name="qwen2_5_vl", source="pretrained", path=None), processor)
    with pytest.raises(ModelConfigError, match="not a local folder"):
        load_processor(ModelConfig(name="qwen2_5_vl", source="pretrained", path="Qwen/Qwen2.5-VL-7B-Instruct"), "/tmp")
    with pytest.raises(ModelConfigError, match="model.dtype"):
        build_model(ModelConfig(dtype="float8"), processor)


def test_attention_choice_on_this_machine():
    expected = "flash_attention_2" if torch.cuda.is_available() and __import__("importlib").util.find_spec("flash_attn") else "sdpa"
    assert resolve_attn_implementation("auto") == expected
    assert resolve_attn_implementation("eager") == "eager"
