"""Loading the shared multimodal model and its processor.

Any Hugging Face image-text-to-text checkpoint loads from a local folder
(`AutoModelForImageTextToText`, `AutoProcessor`); Qwen2.5-VL is the reference family.
`model.path: null` builds the tiny random-init Qwen2.5-VL instead (see `tiny.py`).
Nothing is ever fetched from a hub: a path that is not a local folder is an error.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import torch

from m2r.config import ModelConfig

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


class ModelConfigError(ValueError):
    pass


def _check_local(path: str, key: str) -> Path:
    p = Path(os.path.expanduser(path))
    if not p.is_dir():
        raise ModelConfigError(
            f"{key}={path!r} is not a local folder. m2r never downloads weights: download the checkpoint "
            f"yourself (e.g. `huggingface-cli download Qwen/Qwen2.5-VL-7B-Instruct --local-dir /ckpt/qwen2_5_vl_7b`) "
            f"and pass its folder as {key}=..., or use the embedded tiny model with model=tiny_qwen2_5_vl."
        )
    if not (p / "config.json").exists():
        raise ModelConfigError(f"{key}={path!r} has no config.json; point it at the folder that holds config.json and the weights.")
    return p


def _check_source(cfg: ModelConfig) -> None:
    if cfg.source not in ("tiny", "random", "pretrained"):
        raise ModelConfigError(f"model.source={cfg.source!r} is not valid; use tiny, random or pretrained")
    if cfg.source == "random":
        from m2r.model.shapes import SHAPES

        if cfg.shape not in SHAPES:
            raise ModelConfigError(
                f"model={cfg.name} has model.source=random but model.shape={cfg.shape!r}, which is not a known size; "
                f"set model.shape to one of {', '.join(SHAPES)} (or use model=qwen2_5_vl_3b_random / model=qwen2_5_vl_7b_random)."
            )
    if cfg.source == "pretrained" and not cfg.path:
        raise ModelConfigError(
            f"model={cfg.name} needs model.path=<local folder of the checkpoint>. m2r never downloads weights: get one with "
            f"e.g. `huggingface-cli download Qwen/Qwen2.5-VL-7B-Instruct --local-dir /ckpt/qwen2_5_vl_7b` on a machine with "
            f"network access, then pass model.path=/ckpt/qwen2_5_vl_7b; or train the embedded tiny model with model=tiny_qwen2_5_vl."
        )


def resolve_attn_implementation(requested: str) -> str:
    """`auto` -> flash_attention_2 when flash-attn is installed and a GPU is present, else sdpa."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load_processor(cfg: ModelConfig, cache_dir: str | os.PathLike):
    """The processor of the checkpoint at `processor_path` or `path`, or the tiny processor (sources tiny and random)."""
    from transformers import AutoProcessor

    _check_source(cfg)
    path = cfg.processor_path or cfg.path
    if cfg.source in ("tiny", "random") and cfg.processor_path is None:
        from m2r.model.tiny import load_tiny_processor

        return set_video_budget(load_tiny_processor(cfg, cache_dir), cfg)
    p = Path(os.path.expanduser(path))
    if not p.is_dir():
        _check_local(path, "model.processor_path" if cfg.processor_path else "model.path")
    # The pixel budget as the image and video processors' `size` (min_pixels/max_pixels given here would become
    # call-time arguments, deprecated in transformers 5.x).
    processor = AutoProcessor.from_pretrained(p, trust_remote_code=cfg.trust_remote_code, size={"shortest_edge": cfg.min_pixels, "longest_edge": cfg.max_pixels})
    return set_video_budget(processor, cfg)


def set_video_budget(processor, cfg: ModelConfig):
    """Give the video processor its own per-frame pixel budget (`model.video_min_pixels`/`video_max_pixels`;
    the `size` above set the image budget on both), bounded in total as qwen-vl-utils bounds it."""
    vp = getattr(processor, "video_processor", None)
    if vp is None:
        return processor
    if cfg.video_min_pixels > cfg.video_max_pixels:
        raise ModelConfigError(f"model.video_min_pixels={cfg.video_min_pixels} is above model.video_max_pixels={cfg.video_max_pixels}; "
                               "they bound the pixels of each video frame (the M2-Reasoning release: 100352 and 602112)")
    from transformers.image_processing_utils import SizeDict

    vp.size = SizeDict(shortest_edge=cfg.video_min_pixels, longest_edge=cfg.video_max_pixels)
    if hasattr(vp, "cap_pixels_per_frame"):
        vp.cap_pixels_per_frame = True  # the reference behaviour; transformers warns on every call while it is unset
    return processor


def build_model(cfg: ModelConfig, processor) -> torch.nn.Module:
    """The model from `cfg.path`, or a random-init one (tiny, or of a released `shape`); freezing, LoRA and checkpointing applied."""
    from transformers import AutoModelForImageTextToText

    dtype = DTYPES.get(cfg.dtype)
    if dtype is None:
        raise ModelConfigError(f"model.dtype={cfg.dtype!r} is not supported; use one of float32, bfloat16, float16")
    attn = resolve_attn_implementation(cfg.attn_implementation)
    _check_source(cfg)
    if cfg.source in ("tiny", "random"):
        from m2r.model.shapes import shape_model_config
        from m2r.model.tiny import tiny_model_config

        torch.manual_seed(cfg.tiny.seed)
        config = tiny_model_config(cfg, processor.tokenizer) if cfg.source == "tiny" else shape_model_config(cfg.shape, processor.tokenizer)
        model = AutoModelForImageTextToText.from_config(config, attn_implementation=attn, dtype=dtype)
        model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
        model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    else:
        path = _check_local(cfg.path, "model.path")
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, attn_implementation=attn, trust_remote_code=cfg.trust_remote_code)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    what = {"tiny": "tiny Qwen2.5-VL from config", "random": f"random-init Qwen2.5-VL of the released {cfg.shape} shape"}.get(cfg.source, cfg.path)
    log.info("model: %s (%s, attn=%s, %.1fM parameters)", what, cfg.dtype, attn, sum(p.numel() for p in model.parameters()) / 1e6)

    freeze(model, vision=cfg.freeze_vision, projector=cfg.freeze_projector, language=cfg.freeze_language)
    if cfg.gradient_checkpointing:
        enable_checkpointing(model)
        model.config.use_cache = False
    if cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM"))
    return model


def _parts(model: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """Parameters split into vision tower, projector (merger) and language model by name."""
    parts: dict[str, list] = {"vision": [], "projector": [], "language": []}
    for name, p in model.named_parameters():
        if ".visual." in f".{name}" or name.startswith("visual."):
            parts["projector" if ".merger." in name else "vision"].append(p)
        else:
            parts["language"].append(p)
    return parts


def freeze(model: torch.nn.Module, vision: bool = False, projector: bool = False, language: bool = False) -> None:
    for part, flag in (("vision", vision), ("projector", projector), ("language", language)):
        if flag:
            for p in _parts(model)[part]:
                p.requires_grad_(False)
    if vision and projector and language:
        raise ModelConfigError("model.freeze_vision, freeze_projector and freeze_language are all true: nothing would train")


def enable_checkpointing(model: torch.nn.Module) -> None:
    """transformers' activation checkpointing of every decoder layer, non-reentrant (`activation_checkpointing_enable`
    since transformers 5.2x; `gradient_checkpointing_enable`, its deprecated name, before)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
