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


try:
    from lightning.pytorch.strategies import ModelParallelStrategy as _ModelParallelStrategy
except ImportError:  # pragma: no cover - Lightning < 2.4
    _ModelParallelStrategy = object


class FSDP2Strategy(_ModelParallelStrategy):
    """FSDP2 (`torch.distributed.fsdp.fully_shard`) over every rank: Lightning's ModelParallelStrategy
    with the whole world as the data-parallel dimension (no tensor parallelism). The modules shard
    their networks in `configure_model` with `shard_model` (each module whose class name is in
    `layer_classes`, then the root). Why FSDP2 rather than FSDPStrategy (FSDP1): no forward
    redirection (generate, the reference model and manual_backward inside training_step just
    work), plain `clip_grad_norm_` on DTensors, and it runs on CPU with gloo, so CI tests it."""

    def __init__(self, layer_classes: list[str], param_dtype: str | None = None, reshard_after_forward: bool = True, **kwargs: Any):
        kwargs.setdefault("save_distributed_checkpoint", False)  # full checkpoints: the Hugging Face export reads them
        super().__init__(**kwargs)
        self.layer_classes, self.param_dtype, self.reshard_after_forward = list(layer_classes), param_dtype, reshard_after_forward

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        self._tensor_parallel_size = 1
        super().setup_environment()


def shard_model(module: L.LightningModule, model: torch.nn.Module) -> torch.nn.Module:
    """`fully_shard` the model's layers and root when the trainer's strategy is FSDP2Strategy; else unchanged."""
    trainer = module._trainer
    strategy = trainer.strategy if trainer is not None else None
    if not isinstance(strategy, FSDP2Strategy):
        return model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from m2r.model.load import DTYPES

    mesh = module.device_mesh["data_parallel"]
    mp = MixedPrecisionPolicy(param_dtype=DTYPES[strategy.param_dtype], reduce_dtype=torch.float32) if strategy.param_dtype else MixedPrecisionPolicy()
    names = set(strategy.layer_classes)
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"strategy.layer_classes={sorted(names)} matches no module of {type(model).__name__}; name its decoder layer and vision block classes")
    # An untied LM head is a unit of its own: token_logps applies it in chunks after the root's forward.
    # (A tied head shares its weight with the embeddings, which stay in the root's group.)
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    untied_head = [head] if head is not None and emb is not None and head.weight is not emb.weight else []
    for m in [*layers, *untied_head]:
        fully_shard(m, mesh=mesh, mp_policy=mp, reshard_after_forward=strategy.reshard_after_forward)
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=strategy.reshard_after_forward)
    return model


def params_sharded(strategy) -> bool:
    """True when a rank holds only a shard of the parameters (ZeRO-3, FSDP2): generation must keep
    every rank stepping until all are done (`synced_gpus`)."""
    from lightning.pytorch.strategies import DeepSpeedStrategy

    if isinstance(strategy, FSDP2Strategy):
        return strategy.world_size > 1
    if isinstance(strategy, DeepSpeedStrategy):
        return strategy.config.get("zero_optimization", {}).get("stage", 0) == 3 and strategy.world_size > 1
    return False


def same_media_across_ranks(module: L.LightningModule, has_images: bool, has_videos: bool, what: str) -> None:
    """Where parameters are sharded (FSDP2, ZeRO-3), every rank must run the vision tower the same way in each step:
    its blocks gather their weights collectively, so a rank encoding images and videos (two passes) beside one
    encoding images only (one pass), or one encoding nothing (a text-only batch) beside one encoding images, waits
    forever. Raise on every rank instead, saying what each has and what to change. Checked per batch: a micro-batch
    split that differs across ranks is not caught. A no-op for unsharded strategies (DDP, one process)."""
    if module._trainer is None or not params_sharded(module.trainer.strategy):
        return
    mine = torch.tensor([int(has_images), int(has_videos)], device=module.device)
    every = module.all_gather(mine).reshape(-1, 2).tolist()
    if len({sum(r) for r in every}) > 1:  # images and videos are one pass of the tower each: the number of passes must agree
        kinds = ["+".join([k for k, on in zip(("images", "videos"), r) if on]) or "text only" for r in every]
        raise ValueError(
            f"{what}: under sharded parameters (FSDP2 / ZeRO-3) the ranks' batches hold different media ({', '.join(f'rank {i}: {k}' for i, k in enumerate(kinds))}), "
            "and the vision tower would run a different number of times on each, so its sharded weights would wait forever. "
            "Use strategy=ddp, or data whose every sample shows the same kinds of media (e.g. data.tasks of still-image tasks only, "
            "or only video tasks); mixing them under FSDP2/ZeRO-3 is not supported yet")


def clip_gradients(module: L.LightningModule, optimizer, max_norm: float | None) -> None:
    """Clip the gradient norm under any strategy: DeepSpeed clips inside its engine step (its
    `gradient_clipping`, which `make_trainer` sets from the same key); everywhere else (auto, DDP,
    FSDP2's DTensors) `torch.nn.utils.clip_grad_norm_` through Lightning's precision plugin."""
    from lightning.pytorch.strategies import DeepSpeedStrategy

    if not max_norm or isinstance(module.trainer.strategy, DeepSpeedStrategy):
        return
    module.clip_gradients(optimizer, gradient_clip_val=max_norm, gradient_clip_algorithm="norm")


def make_strategy(cfg: DictConfig | None):
    if cfg is None or "_target_" not in cfg:
        return (cfg or {}).get("name", "auto")
    return instantiate(cfg)


def grad_clip_settings(strategy, clip: float | None, manual_optimization: bool) -> dict[str, Any]:
    """Where the one clipping key (`trainer.gradient_clip_val`) goes under `strategy`: the Trainer's
    `gradient_clip_val` (automatic optimization outside DeepSpeed), the module's own clipping
    (manual optimization), DeepSpeed's `gradient_clipping`. Sets the DeepSpeed config. Under FSDP2
    Lightning's plugin clips the DTensor gradients like any others."""
    from lightning.pytorch.strategies import DeepSpeedStrategy

    clip = float(clip) if clip else None
    out = {"trainer": None if manual_optimization else clip, "module": clip, "deepspeed": None}
    if isinstance(strategy, DeepSpeedStrategy):
        strategy.config["gradient_clipping"] = clip or 0.0  # the engine clips; Lightning's plugin cannot
        out.update(trainer=None, module=None, deepspeed=clip or 0.0)
    return out


def make_trainer(cfg: DictConfig, stage_dir: Path, name: str, extra_callbacks: list | None = None, manual_optimization: bool = False, max_steps: int | None = None, **overrides: Any) -> L.Trainer:
    """The Lightning Trainer for one stage; checkpoints go to `<stage_dir>/checkpoints`.

    With `manual_optimization` the module clips and accumulates itself, so the Trainer's
    `gradient_clip_val` and `accumulate_grad_batches` are left unset (Lightning refuses them);
    `grad_clip_settings` says where the clipping value goes under each strategy."""
    from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar

    callbacks = []
    for key, c in (cfg.get("callbacks") or {}).items():
        if c is None:
            continue
        if c.get("_target_", "").endswith("ModelCheckpoint"):
            c = OmegaConf.merge(c, {"dirpath": str(stage_dir / "checkpoints")})
            every, steps = c.get("every_n_train_steps"), max_steps or cfg.trainer.get("max_steps")
            if every and steps and steps > 0 and every > steps:
                # An interval past the stage's end would save nothing before it ends: a crash would restart from step 0.
                capped = max(1, steps // 4)
                log.info("%s: checkpoint every %d steps, not every %d (callbacks.checkpoint.every_n_train_steps is longer than the "
                         "stage's %d steps)", name, capped, every, steps)
                c = OmegaConf.merge(c, {"every_n_train_steps": capped})
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
    strategy = make_strategy(cfg.get("strategy"))
    trainer_cfg["gradient_clip_val"] = grad_clip_settings(strategy, trainer_cfg.get("gradient_clip_val"), manual_optimization)["trainer"]
    if manual_optimization:
        trainer_cfg["accumulate_grad_batches"] = 1
    return instantiate(trainer_cfg, callbacks=callbacks, logger=logger, strategy=strategy, default_root_dir=str(stage_dir))


def checkpoint_intact(path: Path) -> bool:
    """Whether a Lightning checkpoint can be opened: a `torch.save` zip whose central directory and
    pickled record read back (a save killed mid-write leaves a truncated zip); a DeepSpeed folder whose
    `latest` tag holds one state file per data-parallel rank, each readable; or a distributed
    (sharded) checkpoint folder whose metadata reads back and names only files that are there in full.
    Cheap: the tensors themselves are not read.

    Not caught: DeepSpeed under Lightning always saves to the tag `checkpoint`, overwriting it in
    place, so a kill after every rank wrote but before the save ended looks intact."""
    import zipfile

    path = Path(path)
    if path.is_dir() and (path / ".metadata").is_file():  # torch.distributed.checkpoint, with Lightning's meta.pt written last
        return _dcp_intact(path) and checkpoint_intact(path / "meta.pt")
    if path.is_dir():  # DeepSpeed: the tag `latest` names (Lightning's folder: "checkpoint")
        tag = path / "latest"
        state = path / tag.read_text().strip() if tag.is_file() else path / "checkpoint"
        files = sorted(state.glob("*.pt")) if state.is_dir() else []
        return bool(files) and _deepspeed_ranks_complete(files) and all(checkpoint_intact(f) for f in files)
    try:
        with zipfile.ZipFile(path) as z:
            pkl = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pkl:
                return False
            z.read(pkl[0])  # CRC-checked
            size = path.stat().st_size
            return all(i.header_offset + i.compress_size <= size for i in z.infolist())
    except (OSError, zipfile.BadZipFile, EOFError, KeyError, ValueError):
        return False


def _deepspeed_ranks_complete(files: list[Path]) -> bool:
    """Every kind of per-rank file (`[bf16_]zero_pp_rank_<r>_mp_rank_<m>_<kind>.pt`) present for ranks 0..n-1, the same n
    for every kind: a save killed before some rank wrote leaves a gap or a shorter set."""
    import re
    from collections import defaultdict

    ranks: dict[str, set[int]] = defaultdict(set)
    for f in files:
        m = re.fullmatch(r"(?:bf16_)?zero_pp_rank_(\d+)_mp_rank_(\d+)_(\w+)\.pt", f.name)
        if m:
            ranks[f"{m.group(2)}/{m.group(3)}"].add(int(m.group(1)))
    sizes = {len(r) for r in ranks.values()}
    if not (all(r == set(range(len(r))) for r in ranks.values()) and len(sizes) <= 1):
        return False
    world = _deepspeed_world_size(files)  # a save that lost its last rank(s) still has ranks 0..n-1
    return world is None or not sizes or sizes == {world}


def _deepspeed_world_size(files: list[Path]) -> int | None:
    """The data-parallel world size a DeepSpeed model-states file records (None when it cannot be read without its tensors)."""
    import torch

    states = [f for f in files if f.name.endswith("model_states.pt")]
    for f in sorted(states, key=lambda f: len(f.name)):
        try:
            state = torch.load(f, map_location="cpu", mmap=True, weights_only=False)
        except Exception:  # noqa: BLE001 - a pickle that needs deepspeed's classes, or a truncated file (caught by the zip check)
            continue
        n = state.get("dp_world_size") if isinstance(state, dict) else None
        if isinstance(n, int):
            return n
    return None


def _dcp_intact(path: Path) -> bool:
    try:
        from torch.distributed.checkpoint import FileSystemReader

        meta = FileSystemReader(str(path)).read_metadata()
    except Exception:  # noqa: BLE001 - any failure to read the metadata back means not intact
        return False
    need: dict[str, int] = {}
    for info in (meta.storage_data or {}).values():
        need[info.relative_path] = max(need.get(info.relative_path, 0), info.offset + info.length)
    return bool(need) and all((path / f).is_file() and (path / f).stat().st_size >= n for f, n in need.items())


def resume_path(cfg: DictConfig, stage_dir: Path, use_given: bool = True) -> str | None:
    """`ckpt_path` if given (and `use_given`); else, when `resume`, the newest intact checkpoint of
    `<stage_dir>/checkpoints`: `last.ckpt`, or, when that is unreadable (a crash while it was being
    written), the newest periodic one, with a warning."""
    if use_given and cfg.get("ckpt_path"):
        p = Path(cfg.ckpt_path)
        if not p.exists():
            raise FileNotFoundError(f"ckpt_path={p} does not exist")
        if not checkpoint_intact(p):
            raise ValueError(f"ckpt_path={p} is not a readable checkpoint (truncated or not a Lightning checkpoint)")
        return str(p)
    folder = stage_dir / "checkpoints"
    if not cfg.get("resume", True) or not folder.is_dir():
        return None
    last = folder / "last.ckpt"
    others = sorted((p for p in folder.glob("*.ckpt") if p.name != "last.ckpt" and not p.name.startswith("export")),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    candidates = ([last] if last.exists() else []) + others
    for i, p in enumerate(candidates):
        if checkpoint_intact(p):
            if i:
                log.warning("%s cannot be read (truncated: killed while saving?); resuming from %s, the newest intact checkpoint",
                            ", ".join(str(c) for c in candidates[:i]), p)
            else:
                log.info("resuming from %s", p)
            return str(p)
    if candidates:
        raise RuntimeError(f"no checkpoint in {folder} can be read ({', '.join(c.name for c in candidates)}: truncated?). Move them away "
                           "to start this stage from its beginning, or resume from another one with ckpt_path=<file>")
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
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    if isinstance(trainer.strategy, (DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy)):
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
