"""The stages and the pipeline that chains them in one run directory.

`cfg.stage.steps` lists what a stage runs, in order: `stage=build` builds shards,
`stage=sft` builds them if needed and then fine-tunes, `stage=pipeline` runs the whole recipe.
Each step reads what the step before wrote (paths in `cfg.paths`) and is skipped when its
output is already complete in the run directory, so re-running the same command resumes.

Implemented so far: build and sft. GRPO, difficulty scoring, curriculum shards and evaluation
arrive with their own issues; a stage that names a step this version lacks fails at start.
"""

from __future__ import annotations

import json
import logging
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import lightning as L
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def _data_root(cfg: DictConfig) -> Path:
    return Path(cfg.data.root or cfg.paths.build_dir)


def step_build(cfg: DictConfig) -> dict[str, Any]:
    from m2r.data.build import build_data

    t0 = time.perf_counter()
    root = build_data(OmegaConf.to_object(cfg.data), cfg.paths.build_dir, cfg.seed)
    return {"root": str(root), "seconds": round(time.perf_counter() - t0, 1)}


def step_sft(cfg: DictConfig) -> dict[str, Any]:
    from m2r.callbacks.history import MetricHistory
    from m2r.data.build import build_data
    from m2r.data.datamodule import SFTDataModule
    from m2r.model.load import build_model, load_processor
    from m2r.modules.sft import SFTModule
    from m2r.training import export_hf, make_trainer, resume_path

    sft_dir = Path(cfg.paths.sft_dir)
    hf_dir = sft_dir / "hf"
    summary_path = sft_dir / "summary.json"
    if cfg.get("resume", True) and (hf_dir / "COMPLETE").exists() and summary_path.exists():
        log.info("SFT output %s is complete; skipping (resume=false to train again)", hf_dir)
        return json.loads(summary_path.read_text())

    t0 = time.perf_counter()
    data_cfg = OmegaConf.to_object(cfg.data)
    model_cfg = OmegaConf.to_object(cfg.model)
    root = build_data(data_cfg, cfg.paths.build_dir, cfg.seed)  # no-op when the shards are there
    processor = load_processor(model_cfg, cfg.paths.cache_dir)
    dm = SFTDataModule(
        root, processor, batch_size=data_cfg.batch_size, num_workers=data_cfg.num_workers, shuffle_buffer=data_cfg.shuffle_buffer,
        max_length=data_cfg.max_length, seed=cfg.seed,
    )
    factory = partial(build_model, model_cfg, processor)
    args = OmegaConf.to_container(cfg.sft, resolve=True)
    max_steps = args.pop("max_steps")
    module = SFTModule(model_factory=factory, **args)
    history = MetricHistory(sft_dir / "history.json")
    trainer = make_trainer(cfg, sft_dir, "sft", extra_callbacks=[history], max_steps=max_steps)
    trainer.fit(module, dm, ckpt_path=resume_path(cfg, sft_dir))
    export_hf(trainer, module, processor, hf_dir, factory)

    summary = {"steps": trainer.global_step, **_curve(history.rows, "train/loss", "loss")}
    summary |= {
        "val_loss": float(trainer.callback_metrics["val/loss"]) if "val/loss" in trainer.callback_metrics else None,
        "seconds": round(time.perf_counter() - t0, 1),
        "hf_dir": str(hf_dir),
    }
    if trainer.is_global_zero:
        summary_path.write_text(json.dumps(summary, indent=2))
    log.info("SFT: %s", summary)
    return summary


def _curve(rows: list[dict], key: str, name: str) -> dict[str, float | None]:
    """First and last values of a logged metric, and the means of its first and last tenth."""
    vals = [r[key] for r in rows if key in r]
    if not vals:
        return {f"{name}_first": None, f"{name}_first_mean": None, f"{name}_last": None, f"{name}_last_mean": None}
    k = max(1, min(10, len(vals) // 10))
    return {f"{name}_first": vals[0], f"{name}_first_mean": sum(vals[:k]) / k, f"{name}_last": vals[-1], f"{name}_last_mean": sum(vals[-k:]) / k}


def step_grpo(cfg: DictConfig) -> dict[str, Any]:
    from dataclasses import replace

    from m2r.callbacks.history import MetricHistory
    from m2r.config import LoraConfig
    from m2r.data.build import build_data
    from m2r.data.datamodule import RLDataModule
    from m2r.model.load import build_model, load_processor
    from m2r.modules.grpo import GRPOModule
    from m2r.rewards.router import router_from_config
    from m2r.training import export_hf, make_trainer, resume_path

    grpo_dir = Path(cfg.paths.grpo_dir)
    hf_dir, summary_path = grpo_dir / "hf", grpo_dir / "summary.json"
    if cfg.get("resume", True) and (hf_dir / "COMPLETE").exists() and summary_path.exists():
        log.info("GRPO output %s is complete; skipping (resume=false to train again)", hf_dir)
        return json.loads(summary_path.read_text())

    t0 = time.perf_counter()
    data_cfg, model_cfg = OmegaConf.to_object(cfg.data), OmegaConf.to_object(cfg.model)
    root = build_data(data_cfg, cfg.paths.build_dir, cfg.seed)
    args = OmegaConf.to_container(cfg.grpo, resolve=True)
    init, prompts_per_step, max_steps = args.pop("init"), args.pop("prompts_per_step"), args.pop("max_steps")
    init_path = None
    if init == "auto":
        sft_hf = Path(cfg.paths.sft_dir) / "hf"
        init_path = sft_hf if (sft_hf / "COMPLETE").exists() else None
    elif init:
        init_path = Path(init)
    if init_path is not None:
        model_cfg = replace(model_cfg, source="pretrained", path=str(init_path), processor_path=None)
    log.info("GRPO starts from %s", init_path or f"model={model_cfg.name}")
    processor = load_processor(model_cfg, cfg.paths.cache_dir)

    algo = OmegaConf.to_container(cfg.algo, resolve=True)
    algo.pop("name")
    kl_cb = (cfg.get("callbacks") or {}).get("kl_annealing")
    needs_ref = (kl_cb.beta_max > 0 or kl_cb.beta_min > 0) if kl_cb else algo["beta"] > 0
    factory = partial(build_model, model_cfg, processor)
    ref_cfg = replace(model_cfg, lora=LoraConfig(enabled=False), gradient_checkpointing=False)
    module = GRPOModule(
        factory, processor, router_from_config(cfg.reward), partial(build_model, ref_cfg, processor) if needs_ref else None,
        **algo, **args, seed=cfg.seed,
    )
    dm = RLDataModule(root, prompts_per_step, num_workers=data_cfg.num_workers, shuffle_buffer=data_cfg.shuffle_buffer, seed=cfg.seed)
    history = MetricHistory(grpo_dir / "history.json")
    trainer = make_trainer(cfg, grpo_dir, "grpo", extra_callbacks=[history], manual_optimization=True, max_steps=max_steps)
    trainer.fit(module, dm, ckpt_path=resume_path(cfg, grpo_dir))
    export_hf(trainer, module, processor, hf_dir, factory)

    summary = {"steps": trainer.global_step, **_curve(history.rows, "train/reward", "reward"), **_curve(history.rows, "train/acc", "acc")}
    summary |= {"step_time_mean": _mean(history.rows, "train/step_time"), "seconds": round(time.perf_counter() - t0, 1), "hf_dir": str(hf_dir), "init": str(init_path or model_cfg.name)}
    if trainer.is_global_zero:
        summary_path.write_text(json.dumps(summary, indent=2))
    log.info("GRPO: %s", summary)
    return summary


def _mean(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if key in r]
    return sum(vals) / len(vals) if vals else None


def step_eval(cfg: DictConfig) -> dict[str, Any]:
    from dataclasses import replace

    from m2r.eval.runner import BENCHMARKS, generate_responses, read_predictions, score_benchmark, write_outputs

    b = cfg.get("benchmark")
    if not b or not b.get("name"):
        raise ValueError("stage=eval needs a benchmark: benchmark=mathvision|wemath benchmark.root=<folder of its files>")
    if b.name not in BENCHMARKS:
        raise ValueError(f"benchmark={b.name} is not implemented yet; available: {sorted(BENCHMARKS)}")
    if not b.root:
        raise ValueError(f"benchmark.root is required: the local folder of the {b.name} files (m2r never downloads benchmarks)")
    t0 = time.perf_counter()
    extra = {k: v for k, v in OmegaConf.to_container(b, resolve=True).items() if k not in ("name", "root", "split", "prompt", "format")}
    if b.get("format", "native") == "tsv":
        from m2r.eval import tsv

        items = tsv.load(b.root, b.split)
    else:
        items = BENCHMARKS[b.name].load(b.root, b.split, **extra)
    if cfg.eval.limit:
        items = items[: int(cfg.eval.limit)]
    if cfg.eval.predictions:
        responses = read_predictions(cfg.eval.predictions, items)
        label = f"predictions: {Path(cfg.eval.predictions).name}"
    else:
        from m2r.model.load import build_model, load_processor

        model_cfg = OmegaConf.to_object(cfg.model)
        src = cfg.eval.model
        if src == "auto":
            src = next((str(p) for p in (Path(cfg.paths.grpo_dir) / "hf", Path(cfg.paths.sft_dir) / "hf") if (p / "COMPLETE").exists()), None)
        if src:
            model_cfg = replace(model_cfg, source="pretrained", path=str(src), processor_path=None)
        processor = load_processor(model_cfg, cfg.paths.cache_dir)
        model = build_model(model_cfg, processor)
        import torch

        if torch.cuda.is_available():
            model = model.cuda()
        responses = generate_responses(model, processor, items, b.name if b.prompt == "official" else "m2", cfg.eval.batch_size, cfg.eval.max_new_tokens, cfg.eval.greedy)
        label = f"this run ({src or model_cfg.name})"
    samples, metrics = score_benchmark(b.name, items, responses)
    out = Path(cfg.paths.eval_dir) / b.name
    write_outputs(out, b.name, label, samples, metrics)
    summary = {"benchmark": b.name, "rows": len(items), "score": metrics["score"], "seconds": round(time.perf_counter() - t0, 1), "dir": str(out)}
    log.info("eval: %s", summary)
    return summary


STEPS: dict[str, Callable[[DictConfig], dict[str, Any]]] = {"build": step_build, "sft": step_sft, "grpo": step_grpo, "eval": step_eval}


def _single_log_lines() -> None:
    """Under Hydra the root logger already prints and files Lightning's messages; drop Lightning's own console handler."""
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            lg = logging.getLogger(name)
            for h in list(lg.handlers):
                lg.removeHandler(h)
            lg.propagate = True


def run(cfg: DictConfig) -> dict[str, Any]:
    missing = [s for s in cfg.stage.steps if s not in STEPS]
    if missing:
        raise ValueError(f"stage={cfg.stage.name} runs step(s) {missing} that this version of m2r does not have; it has {list(STEPS)}")
    _single_log_lines()
    L.seed_everything(cfg.seed, workers=True)
    Path(cfg.paths.run_dir).mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for step in cfg.stage.steps:
        log.info("=== %s ===", step)
        results[step] = STEPS[step](cfg)
    return results
