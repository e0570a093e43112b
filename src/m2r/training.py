"""Trainer assembly shared by the stages: strategy, logger, callbacks, resume, Hugging Face export."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def fsdp_strategy(layer_classes: list[str], **kwargs: Any):
    """FSDPStrategy wrapping every module whose class name is in `layer_classes` (e.g. decoder layers)."""
    from lightning.pytorch.strategies import FSDPStrategy

    names = set(layer_classes)

    def policy(module: torch.nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
        return recurse or type(module).__name__ in names

    return FSDPStrategy(auto_wrap_policy=policy, **kwargs)


def make_strategy(cfg: DictConfig | None):
    if cfg is None or "_target_" not in cfg:
        return (cfg or {}).get("name", "auto")
    return instantiate(cfg)


def make_trainer(cfg: DictConfig, stage_dir: Path, name: str, extra_callbacks: list | None = None, manual_optimization: bool = False, max_steps: int | None = None, **overrides: Any) -> L.Trainer:
    """The Lightning Trainer for one stage; checkpoints go to `<stage_dir>/checkpoints`.

    With `manual_optimization` the module clips and accumulates itself, so the Trainer's
    `gradient_clip_val` and `accumulate_grad_batches` are left unset (Lightning refuses them)."""
    from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar

    callbacks = []
    for key, c in (cfg.get("callbacks") or {}).items():
        if c is None:
            continue
        if c.get("_target_", "").endswith("ModelCheckpoint"):
            c = OmegaConf.merge(c, {"dirpath": str(stage_dir / "checkpoints")})
        elif c.get("_target_", "").endswith("RolloutLogger") and not c.get("dirpath"):
            c = OmegaConf.merge(c, {"dirpath": str(cfg.paths.rollouts_dir)})
        callbacks.append(instantiate(c))
    enable_bar = cfg.trainer.get("enable_progress_bar", True)
    callbacks = [c for c in callbacks if enable_bar or not isinstance(c, ProgressBar)]
    if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        log.warning("no ModelCheckpoint in callbacks: this %s run cannot be resumed", name)
    callbacks += extra_callbacks or []
    logger = instantiate(cfg.logger, name=name) if cfg.get("logger") else False
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    if max_steps is not None:
        trainer_cfg["max_steps"] = max_steps
    trainer_cfg.update(overrides)
    if manual_optimization:
        trainer_cfg["gradient_clip_val"] = None
        trainer_cfg["accumulate_grad_batches"] = 1
    return instantiate(trainer_cfg, callbacks=callbacks, logger=logger, strategy=make_strategy(cfg.get("strategy")), default_root_dir=str(stage_dir))


def resume_path(cfg: DictConfig, stage_dir: Path) -> str | None:
    """`ckpt_path` if given; else `<stage_dir>/checkpoints/last.ckpt` when `resume` and it exists."""
    if cfg.get("ckpt_path"):
        p = Path(cfg.ckpt_path)
        if not p.exists():
            raise FileNotFoundError(f"ckpt_path={p} does not exist")
        return str(p)
    last = stage_dir / "checkpoints" / "last.ckpt"
    if cfg.get("resume", True) and last.exists():
        log.info("resuming from %s", last)
        return str(last)
    return None


def _full_state_dict(trainer: L.Trainer, stage_dir: Path) -> dict[str, torch.Tensor] | None:
    """A full (unsharded) state dict of the LightningModule on rank 0 under FSDP / DeepSpeed."""
    from lightning.pytorch.strategies import DeepSpeedStrategy

    path = stage_dir / "checkpoints" / "export.ckpt"
    trainer.save_checkpoint(path)  # collective
    if not trainer.is_global_zero:
        return None
    if isinstance(trainer.strategy, DeepSpeedStrategy):
        from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

        out = stage_dir / "checkpoints" / "export_fp32.ckpt"
        convert_zero_checkpoint_to_fp32_state_dict(str(path), str(out))
        path = out
    if path.is_dir():
        raise RuntimeError(f"{path} is a sharded checkpoint; set strategy.state_dict_type=full to export Hugging Face weights")
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def export_hf(trainer: L.Trainer, module: L.LightningModule, processor, out_dir: Path, model_factory) -> None:
    """`save_pretrained` of the trained model (LoRA merged) and the processor into `out_dir`."""
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

    if isinstance(trainer.strategy, (DeepSpeedStrategy, FSDPStrategy)):
        state = _full_state_dict(trainer, out_dir.parent)
        if trainer.is_global_zero:
            model = model_factory()
            model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    else:
        model = module.model
    if trainer.is_global_zero:
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
        (out_dir / "COMPLETE").write_text("saved by m2r\n")
        log.info("saved Hugging Face model and processor to %s", out_dir)
    trainer.strategy.barrier()
