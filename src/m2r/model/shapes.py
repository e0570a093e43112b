"""Qwen2.5-VL configs with the released dimensions, for random-init "shape-real" models.

`model=qwen2_5_vl_3b_random` and `model=qwen2_5_vl_7b_random` (`model.source=random`) build
these with random weights and nothing downloaded: parameter count, optimizer state, FLOPs and
activation shapes are those of the released checkpoints, so strategies, batch sizes and pixel
budgets can be sized before anyone fetches 16 GB of weights. Run one, e.g.:

    python run.py model=qwen2_5_vl_7b_random strategy=fsdp trainer=gpu

How the configs depart from the released config.json files of Qwen/Qwen2.5-VL-3B-Instruct and
Qwen/Qwen2.5-VL-7B-Instruct:

1. The special token ids (image, video, vision start/end, bos/eos/pad) are the project's
   tokenizer's (`tiny.py`), which stands in for Qwen's; `vocab_size` stays the released one, so
   the embedding and LM head cost what they really cost (rows past the tokenizer are never used).
2. The weights are random: the model learns nothing useful, it only costs what the real one does.
"""

from __future__ import annotations

# The language-model dimensions of each released size (config.json of Qwen/Qwen2.5-VL-<size>-Instruct);
# both share the vision tower in `_qwen2_5_vl_config`.
SHAPES: dict[str, dict] = {
    "3b": dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
               num_key_value_heads=2, max_window_layers=70, tie_word_embeddings=True),  # about 3.75B parameters
    "7b": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, max_window_layers=28, tie_word_embeddings=False),  # about 8.29B parameters
}


def _qwen2_5_vl_config(
    tokenizer,
    *,
    vocab_size: int,
    hidden_size: int,
    intermediate_size: int,
    num_hidden_layers: int,
    num_attention_heads: int,
    num_key_value_heads: int,
    max_window_layers: int,
    tie_word_embeddings: bool,
):
    """A Qwen2.5-VL config: the given LM dimensions, the vision tower both sizes share, the tokenizer's ids."""
    from transformers import Qwen2_5_VLConfig

    from m2r.model.tiny import special_token_ids

    if len(tokenizer) > vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {vocab_size}; lower model.tiny.vocab_size")
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": hidden_size,
            "intermediate_size": intermediate_size,
            "num_hidden_layers": num_hidden_layers,
            "num_attention_heads": num_attention_heads,
            "num_key_value_heads": num_key_value_heads,
            "hidden_act": "silu",
            "max_position_embeddings": 128000,
            "rms_norm_eps": 1e-6,
            # Released as rope_scaling {"type": "mrope", ...}; transformers 5 calls it default RoPE
            # with the (time, height, width) split of each head's 64 frequency pairs.
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
            "use_sliding_window": False,
            "sliding_window": 32768,
            "max_window_layers": max_window_layers,
            "attention_dropout": 0.0,
            "bos_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": 32,
            "hidden_size": 1280,
            "hidden_act": "silu",
            "intermediate_size": 3420,
            "num_heads": 16,
            "in_channels": 3,
            "out_hidden_size": hidden_size,  # the merger projects into the LM width
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,
            "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31],
        },
        tie_word_embeddings=tie_word_embeddings,
        **special_token_ids(tokenizer),
    )


def shape_model_config(shape: str, tokenizer):
    """The Qwen2_5_VLConfig of a released size (`model.shape`), with the tokenizer's special token ids."""
    if shape not in SHAPES:
        raise ValueError(f"model.shape={shape!r} is not a known Qwen2.5-VL size; use one of {', '.join(SHAPES)}")
    return _qwen2_5_vl_config(tokenizer, **SHAPES[shape])
