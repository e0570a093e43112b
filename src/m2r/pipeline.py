"""The stages and the pipeline that chains them in one run directory.

`cfg.stage.steps` lists what a stage runs, in order: `stage=build` builds shards,
`stage=sft` builds them if needed and then fine-tunes, `stage=pipeline` runs the whole recipe.
Each step reads what the step before wrote (paths in `cfg.paths`) and is skipped when its
output is already complete in the run directory, so re-running the same command resumes.

The recipe (`stage=pipeline`): build -> quality (filter the SFT traces) -> perceive (a perception warm-up
on fresh scenes, for a model built from config; off when perceive.max_steps=0) -> sft -> difficulty
(score the RL prompts with the SFT model) -> curriculum (difficulty-ordered shards) ->
heldout_sft (evaluate the SFT model on the held-out split) -> grpo -> heldout_grpo -> report.
Every step's wall time goes to `<run>/timings.json`.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any, Callable

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from m2r import stepkeys

log = logging.getLogger(__name__)
perceive_on = stepkeys.perceive_on


def _data_root(cfg: DictConfig) -> Path:
    return Path(cfg.data.root or cfg.paths.build_dir)


def step_build(cfg: DictConfig) -> dict[str, Any]:
    from m2r.data.build import build_data

    t0 = time.perf_counter()
    root = build_data(OmegaConf.to_object(cfg.data), cfg.paths.build_dir, cfg.seed)
    return {"root": str(root), "seconds": round(time.perf_counter() - t0, 1)}


def _finished(cfg: DictConfig, stage_dir: Path, what: str) -> dict[str, Any] | None:
    """The summary of a training step whose export and summary are both written (and `resume` is on), else None."""
    hf_dir, summary_path = stage_dir / "hf", stage_dir / "summary.json"
    if cfg.get("resume", True) and (hf_dir / "COMPLETE").exists() and summary_path.exists():
        log.info("%s %s is complete; skipping (resume=false to train again)", what, hf_dir)
        return json.loads(summary_path.read_text())
    return None


def step_perceive(cfg: DictConfig) -> dict[str, Any]:
    """The perception warm-up (m2r.data.perceive): model.* trained on fresh scenes' listings, exported to <perceive>/hf."""
    from m2r.callbacks.history import MetricHistory
    from m2r.data.perceive import PerceiveDataModule
    from m2r.model.load import build_model, load_processor
    from m2r.training import export_hf, make_trainer, resume_path

    if not perceive_on(cfg):
        why = "perceive.max_steps=0" if not int(cfg.perceive.max_steps) else f"model.source=pretrained ({cfg.model.path}) can already see"
        log.info("%s: no perception warm-up; SFT starts from model=%s", why, cfg.model.name)
        return {"skipped": True}
    pdir = Path(cfg.paths.perceive_dir)
    hf_dir, summary_path = pdir / "hf", pdir / "summary.json"
    if (done := _finished(cfg, pdir, "perception warm-up")) is not None:
        return done
    t0 = time.perf_counter()
    from dataclasses import replace

    from m2r.config import LoraConfig

    p = cfg.perceive
    # A warm-up of a model from scratch trains every weight: freezing and LoRA (model.freeze_*, model.lora) are SFT's choices.
    model_cfg = replace(OmegaConf.to_object(cfg.model), freeze_vision=False, freeze_projector=False, freeze_language=False, lora=LoraConfig(enabled=False))
    processor = load_processor(model_cfg, cfg.paths.cache_dir)
    dm = PerceiveDataModule(processor, seed=cfg.seed, batch_size=int(p.batch_size), image_size=int(p.image_size), objects=tuple(p.objects),
                            val_samples=int(p.val_samples), max_length=int(cfg.data.max_length), num_workers=int(cfg.data.num_workers))
    factory = partial(build_model, model_cfg, processor)
    module = instantiate(p.module, factory, _convert_="all")
    history = MetricHistory(pdir / "history.json")
    trainer = make_trainer(cfg, pdir, "perceive", extra_callbacks=[history], max_steps=int(p.max_steps))
    trainer.fit(module, dm, ckpt_path=resume_path(cfg, pdir, use_given=False))  # ckpt_path names an SFT or GRPO checkpoint
    export_hf(trainer, module, processor, hf_dir, factory)
    summary = {"steps": trainer.global_step, **_curve(history.rows, "train/loss", "loss"), **_curve(history.rows, "val/token_acc", "val_token_acc")}
    summary |= {
        "val_loss": float(trainer.callback_metrics["val/loss"]) if "val/loss" in trainer.callback_metrics else None,
        "hf_dir": str(hf_dir),
    }
    if trainer.is_global_zero:
        if int(p.val_samples) > 1:
            summary |= _look_test(cfg, model_cfg, hf_dir, processor)
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        summary_path.write_text(json.dumps(summary, indent=2))
    log.info("perceive: %s", summary)
    return summary


def _look_test(cfg: DictConfig, model_cfg, hf_dir: Path, processor, who: str = "perceive") -> dict[str, Any]:
    """The warm-up's look test (`m2r.data.perceive.reading_accuracy`) on its held-out scenes, from the export in `hf_dir`
    (whole weights under any strategy, LoRA merged; rank 0 alone, after every rank has left the trainer): the warm-up's,
    and SFT's to see how much of the reading SFT keeps. A diagnostic: a failure is logged, not raised."""
    from dataclasses import replace

    import torch

    from m2r.config import LoraConfig

    export_cfg = replace(model_cfg, source="pretrained", path=str(hf_dir), processor_path=None, lora=LoraConfig(enabled=False))
    from m2r.data.perceive import PerceptionStream, reading_accuracy
    from m2r.dist import local_device
    from m2r.model.load import build_model

    p = cfg.perceive
    try:
        model = build_model(export_cfg, processor).to(local_device())
        if torch.cuda.is_available() and export_cfg.dtype == "float32":
            model = model.to(torch.bfloat16)  # inference only (flash attention refuses float32)
        held = PerceptionStream(cfg.seed, 0, int(p.val_samples), int(p.image_size), tuple(p.objects), split="val", limit_batches=1, locate=0.0)
        out = reading_accuracy(model, processor, list(held), batch_size=8, max_length=int(cfg.data.max_length))
        del model
    except Exception as e:  # noqa: BLE001  (diagnostics must not fail a finished warm-up)
        log.warning("%s: the look test failed (%s: %s); the export is complete and used as is", who, type(e).__name__, e)
        return {"reading_acc": None, "look_error": f"{type(e).__name__}: {e}"}
    if out["readings"]:
        log.info("%s: held-out reading accuracy %.3f (columns %.3f, rows %.3f); with each image swapped for another scene's %.3f "
                 "(columns %.3f, rows %.3f); %d readings", who, out["reading_acc"], out["reading_acc_column"], out["reading_acc_row"],
                 out["reading_acc_swapped"], out["reading_acc_column_swapped"], out["reading_acc_row_swapped"], out["readings"])
    if out.get("naming_acc_colour") is not None:
        log.info("%s: colour words %.3f (swapped %.3f), shape words %s (swapped %s); %d objects", who, out["naming_acc_colour"],
                 out["naming_acc_colour_swapped"], out["naming_acc_shape"], out["naming_acc_shape_swapped"], out["namings"])
    return out


def _sft_start(cfg: DictConfig, model_cfg):
    """The model SFT starts from: the perception warm-up's export when the run has one, else model.* as configured."""
    from dataclasses import replace

    if not perceive_on(cfg):
        return model_cfg
    hf = Path(cfg.paths.perceive_dir) / "hf"
    if not (hf / "COMPLETE").exists():
        raise FileNotFoundError(f"perceive.max_steps={cfg.perceive.max_steps} but the perception warm-up has no finished output at {hf}: run it "
                                "first (stage=sft and stage=pipeline do: their steps list perceive before sft), or say perceive.max_steps=0 "
                                "to start SFT from model.* itself")
    log.info("SFT starts from the perception warm-up %s", hf)
    return replace(model_cfg, source="pretrained", path=str(hf), processor_path=None)


def step_sft(cfg: DictConfig) -> dict[str, Any]:
    from m2r.callbacks.history import MetricHistory
    from m2r.data.build import build_data
    from m2r.data.datamodule import SFTDataModule
    from m2r.model.load import build_model, load_processor
    from m2r.training import export_hf, make_trainer, resume_path

    sft_dir = Path(cfg.paths.sft_dir)
    hf_dir, summary_path = sft_dir / "hf", sft_dir / "summary.json"
    if (done := _finished(cfg, sft_dir, "SFT output")) is not None:
        return done

    t0 = time.perf_counter()
    filtered = Path(cfg.paths.quality_dir)
    from m2r import stepkeys

    done = all((filtered / f).exists() for f in stepkeys.COMPLETE["quality"])
    train_root = filtered if cfg.quality.enabled and done else None
    if cfg.quality.enabled and train_root is None:
        log.warning("quality.enabled=true but there are no (complete) quality-filtered traces in %s: SFT trains on every trace. Filter "
                    "first (stage=score, or stage=pipeline), or say quality.enabled=false", filtered)
    if train_root is not None:
        made, now = stepkeys.recorded_key(cfg, "quality"), stepkeys.step_key(cfg, "quality")[0]
        if made != now:  # stage=sft does not run the filter: its output must be the one these settings make
            raise ValueError(f"the quality-filtered traces in {filtered} were made with other quality.* settings or inputs than this run's; "
                             "filter again first (stage=score, or stage=pipeline), or train on every trace with quality.enabled=false")
    extra = []
    if _rehearsal_count(cfg):  # written by rank 0 before the ranks started (BEFORE_RANKS)
        rehearsal = sft_dir / "rehearsal"
        if not (rehearsal / "train" / "manifest.json").exists():
            raise FileNotFoundError(f"sft.rehearsal={cfg.sft.rehearsal} but {rehearsal} holds no perception samples: run SFT through "
                                    "the pipeline (stage=sft or stage=pipeline), which writes them before training")
        extra.append(rehearsal)
        log.info("SFT mixes %d perception samples into its training stream (%s)", cfg.sft.rehearsal, rehearsal)
    data_cfg = OmegaConf.to_object(cfg.data)
    model_cfg = _sft_start(cfg, OmegaConf.to_object(cfg.model))
    root = build_data(data_cfg, cfg.paths.build_dir, cfg.seed)  # no-op when the shards are there
    processor = load_processor(model_cfg, cfg.paths.cache_dir)
    log.info("SFT trains on %s", (train_root or root) / "train")
    dm = SFTDataModule(
        root, processor, batch_size=data_cfg.batch_size, num_workers=data_cfg.num_workers, shuffle_buffer=data_cfg.shuffle_buffer,
        max_length=data_cfg.max_length, seed=cfg.seed, train_root=train_root, extra_train_roots=extra,
    )
    factory = partial(build_model, model_cfg, processor)
    module = instantiate(cfg.sft.module, factory, _convert_="all")  # objects positionally: kwargs are merged into the config
    history = MetricHistory(sft_dir / "history.json")
    trainer = make_trainer(cfg, sft_dir, "sft", extra_callbacks=[history], max_steps=int(cfg.sft.max_steps))
    trainer.fit(module, dm, ckpt_path=resume_path(cfg, sft_dir))
    export_hf(trainer, module, processor, hf_dir, factory)

    summary = {"steps": trainer.global_step, **_curve(history.rows, "train/loss", "loss")}
    summary |= {
        "val_loss": float(trainer.callback_metrics["val/loss"]) if "val/loss" in trainer.callback_metrics else None,
        "seconds": round(time.perf_counter() - t0, 1),
        "hf_dir": str(hf_dir),
    }
    if trainer.is_global_zero:
        if perceive_on(cfg) and int(cfg.perceive.val_samples) > 1:  # how much of the warm-up's reading SFT kept (the same scenes)
            summary["look"] = _look_test(cfg, model_cfg, hf_dir, processor, who="SFT")
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
    from m2r.data.curriculum import BatchLog, CurriculumDataModule
    from m2r.data.shards import read_manifest
    from m2r.model.load import build_model, load_processor
    from m2r.rewards.router import router_from_config
    from m2r.training import export_hf, make_trainer, resume_path

    grpo_dir = Path(cfg.paths.grpo_dir)
    hf_dir, summary_path = grpo_dir / "hf", grpo_dir / "summary.json"
    if (done := _finished(cfg, grpo_dir, "GRPO output")) is not None:
        return done

    t0 = time.perf_counter()
    data_cfg, model_cfg = OmegaConf.to_object(cfg.data), OmegaConf.to_object(cfg.model)
    root = build_data(data_cfg, cfg.paths.build_dir, cfg.seed)
    init, prompts_per_step, max_steps = str(cfg.grpo.init), int(cfg.grpo.prompts_per_step), int(cfg.grpo.max_steps)
    init_path = None
    if init == "auto":
        sft_hf = Path(cfg.paths.sft_dir) / "hf"
        init_path = sft_hf if (sft_hf / "COMPLETE").exists() else None
        if init_path is None and model_cfg.source != "pretrained":
            raise FileNotFoundError(
                f"GRPO would start from random weights: grpo.init=auto found no finished SFT output at {sft_hf}, and model={model_cfg.name} "
                f"(source={model_cfg.source}) is not a trained checkpoint. Run SFT in this run dir first (stage=pipeline, or stage=sft with the "
                "same paths.run_dir), point at a checkpoint (grpo.init=/path/to/hf), or say grpo.init=scratch to start from model.* on purpose")
    elif init != "scratch":
        init_path = Path(init)
        if not (init_path / "config.json").exists():
            raise FileNotFoundError(f"grpo.init={init}: no Hugging Face checkpoint there (no config.json); give a folder written by "
                                    "save_pretrained (e.g. <run>/sft/hf), or grpo.init=auto | scratch")
    if init_path is not None:
        model_cfg = replace(model_cfg, source="pretrained", path=str(init_path), processor_path=None)
    log.info("GRPO starts from %s", init_path or f"model={model_cfg.name}")
    processor = load_processor(model_cfg, cfg.paths.cache_dir)

    needs_ref = cfg.algo.beta > 0  # the KL coefficient, constant or the peak of the annealing (m2r.checks: beta_min <= beta)
    factory = partial(build_model, model_cfg, processor)
    # The reference is never updated: bf16 is enough wherever compute is bf16 (half the memory of the fp32 masters).
    ref_dtype = "bfloat16" if "bf16" in str(cfg.trainer.get("precision", "")) else model_cfg.dtype
    ref_cfg = replace(model_cfg, lora=LoraConfig(enabled=False), gradient_checkpointing=False, dtype=ref_dtype)
    ref_from_base = needs_ref and model_cfg.lora.enabled  # LoRA: the policy with adapters disabled, no second copy
    module = instantiate(
        cfg.grpo.module, factory, processor, router_from_config(cfg.reward), partial(build_model, ref_cfg, processor) if needs_ref and not ref_from_base else None,
        **OmegaConf.to_container(cfg.algo, resolve=True), seed=cfg.seed, max_grad_norm=cfg.trainer.get("gradient_clip_val"), ref_from_base=ref_from_base,
        _convert_="all",
    )
    module.engine = instantiate(cfg.rollout)  # an object: passed as a keyword above, instantiate would turn it into a dict
    cur = Path(cfg.paths.curriculum_dir)
    if (cur / "rl" / "manifest.json").exists():
        prompts_root, split = cur, "rl"
    else:  # no curriculum step ran: the rl split as built (train when it has none)
        prompts_root, split = root, ("rl" if (root / "rl" / "manifest.json").exists() and read_manifest(root, "rl")["count"] else "train")
    log.info("GRPO prompts: %s/%s, mix=%s, end_policy=%s", prompts_root, split, cfg.mix.name, cfg.curriculum.end_policy)
    dm = CurriculumDataModule(
        prompts_root, prompts_per_step, weights=dict(cfg.mix.weights), proportional=cfg.mix.proportional, end_policy=cfg.curriculum.end_policy,
        num_workers=data_cfg.num_workers, seed=cfg.seed, split=split,
    )
    history = MetricHistory(grpo_dir / "history.json")
    callbacks = [history, BatchLog(grpo_dir / "batches.jsonl")]
    # end_policy=drop: the curriculum is one finite pass, so training ends with it if max_steps comes later.
    once = {"max_epochs": 1} if cfg.curriculum.end_policy == "drop" else {}
    # The curriculum sampler splits the data over ranks itself: no DistributedSampler on top.
    trainer = make_trainer(cfg, grpo_dir, "grpo", extra_callbacks=callbacks, manual_optimization=True, max_steps=max_steps, use_distributed_sampler=False, **once)
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
    from m2r.eval.runner import BENCHMARKS, read_predictions, score_benchmark, write_outputs

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
        from m2r.dist import rank_world

        if rank_world()[0] != 0:
            return {"rank_part": True}  # no model: nothing to split, rank 0 scores the file
        responses = read_predictions(cfg.eval.predictions, items)
        label = f"predictions: {Path(cfg.eval.predictions).name}"
    else:
        src = cfg.eval.model
        if src == "auto":
            src = _checkpoint_dir(cfg, "grpo") or _checkpoint_dir(cfg, "sft")
        model, processor, name = _load_model(cfg, src)
        responses = _generate_over_ranks(model, processor, items, b.name if b.prompt == "official" else "m2", cfg, Path(cfg.paths.eval_dir) / b.name)
        if responses is None:
            return {"rank_part": True}
        label = f"this run ({name})"
    samples, metrics = score_benchmark(b.name, items, responses)
    out = Path(cfg.paths.eval_dir) / b.name
    write_outputs(out, b.name, label, samples, metrics)
    summary = {"benchmark": b.name, "rows": len(items), "score": metrics["score"], "seconds": round(time.perf_counter() - t0, 1), "dir": str(out)}
    log.info("eval: %s", summary)
    return summary


def _generate_over_ranks(model, processor, items: list, prompt_style: str, cfg: DictConfig, folder: Path) -> list[str] | None:
    """Responses for `items`, the batches split over all ranks (`m2r.dist`); rank 0 gets them all
    in item order, the other ranks None. Each batch is the one a 1-rank run makes, so greedy
    responses do not depend on the number of ranks."""
    from m2r.dist import gather_rows, my_batches, rank_world
    from m2r.eval.runner import generate_responses

    rank, world = rank_world()
    e = cfg.eval
    if world == 1:
        return generate_responses(model, processor, items, prompt_style, e.batch_size, e.max_new_tokens, e.greedy)
    mine = my_batches(list(range(len(items))), e.batch_size, rank, world)
    idx = [i for _, batch in mine for i in batch]
    texts = generate_responses(model, processor, [items[i] for i in idx], prompt_style, e.batch_size, e.max_new_tokens, e.greedy)
    rows = gather_rows(folder, "responses", [{"i": i, "response": t} for i, t in zip(idx, texts)], rank, world)
    if rows is None:
        return None
    by_index = {r["i"]: r["response"] for r in rows}
    if sorted(by_index) != list(range(len(items))):
        raise RuntimeError(f"gathered {len(by_index)} responses for {len(items)} items from {world} ranks")
    return [by_index[i] for i in range(len(items))]


def _checkpoint_dir(cfg: DictConfig, which: str) -> Path | None:
    """`<run>/<which>/hf` when that stage finished in this run dir, else None."""
    hf = Path(cfg.paths[f"{which}_dir"]) / "hf"
    return hf if (hf / "COMPLETE").exists() else None


def _load_model(cfg: DictConfig, src: str | Path | None):
    """(model on the accelerator when there is one, processor, label) from a local checkpoint, or model.* when `src` is None."""
    from dataclasses import replace

    import torch

    from m2r.model.load import build_model, load_processor

    model_cfg = OmegaConf.to_object(cfg.model)
    if src:
        model_cfg = replace(model_cfg, source="pretrained", path=str(src), processor_path=None)
    from m2r.dist import local_device

    processor = load_processor(model_cfg, cfg.paths.cache_dir)
    model = build_model(model_cfg, processor).to(local_device())
    if torch.cuda.is_available() and model_cfg.dtype == "float32":
        model = model.to(torch.bfloat16)  # inference only: fp32 master weights matter for updates, not for generation
    return model, processor, str(src or model_cfg.name)


def step_quality(cfg: DictConfig) -> dict[str, Any]:
    """Score the SFT traces on the three quality dimensions; keep those at or above quality.threshold."""
    from m2r.scoring.quality import QualityConfig, filter_traces, load_judge

    out = Path(cfg.paths.quality_dir)
    summary_path = out / "summary.json"
    if not cfg.quality.enabled:
        log.info("quality.enabled=false: SFT trains on every trace")
        return {"enabled": False}
    if cfg.get("resume", True) and summary_path.exists() and (out / "train" / "manifest.json").exists():
        log.info("quality output %s is complete; skipping", out)
        return json.loads(summary_path.read_text())
    t0 = time.perf_counter()
    q = OmegaConf.to_container(cfg.quality, resolve=True)
    rules = QualityConfig(**{k: v for k, v in q.items() if k in QualityConfig.__dataclass_fields__})
    judge = load_judge(q["judge"]) if q.get("judge") else None
    summary = filter_traces(_data_root(cfg), "train", out, rules, judge=judge)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary_path.write_text(json.dumps(summary, indent=2))
    log.info("quality: kept %d of %d traces (threshold %.2f); by injected failure: %s", summary["kept"], summary["in"], rules.threshold,
             {k: f"{v['dropped']}/{v['n']} dropped" for k, v in summary["by_noise"].items()})
    return summary


def step_difficulty(cfg: DictConfig) -> dict[str, Any]:
    """Difficulty of every RL prompt: 1 - mean accuracy of N sampled responses of the SFT model."""
    from m2r.data.shards import read_manifest, sample_stream, shard_urls
    from m2r.rewards.router import router_from_config
    from m2r.scoring.difficulty import model_policy, read_difficulties, score_difficulty

    out = Path(cfg.paths.score_dir)
    summary_path, scores_path = out / "summary.json", out / "difficulty.jsonl"
    if cfg.get("resume", True) and summary_path.exists():
        log.info("difficulty scores %s are complete; skipping", scores_path)
        return json.loads(summary_path.read_text())
    from m2r.dist import rank_world

    t0 = time.perf_counter()
    rank, world = rank_world()
    sc = cfg.curriculum.scoring
    src = _checkpoint_dir(cfg, "sft") if sc.model == "auto" else sc.model
    model, processor, label = _load_model(cfg, src)
    root = _data_root(cfg)
    total = read_manifest(root, "rl")["count"]
    policy = model_policy(model, processor, sc.max_new_tokens, sc.temperature, sc.top_p, seed=cfg.seed)
    counts = score_difficulty(sample_stream(shard_urls(root, "rl"), shuffle_shards=False), policy, router_from_config(cfg.reward),
                              scores_path, N=sc.N, batch_size=sc.batch_size, total=total, rank=rank, world=world)
    if rank != 0:
        return counts  # rank 0 merged every rank's part; its summary is the step's result
    diffs = list(read_difficulties(scores_path).values())
    tol = cfg.curriculum.tol  # the curriculum step's notion of always / never solved
    summary = {**counts, "model": label, "N": sc.N, "mean": sum(diffs) / max(1, len(diffs)), "tol": tol,
               "solved": sum(d <= tol for d in diffs), "unsolved": sum(d >= 1 - tol for d in diffs), "seconds": round(time.perf_counter() - t0, 1)}
    summary_path.write_text(json.dumps(summary, indent=2))  # written last: its presence means scoring finished
    log.info("difficulty: %s", summary)
    return summary


def step_curriculum(cfg: DictConfig) -> dict[str, Any]:
    """Per task, the scored RL prompts easy to hard (or shuffled for curriculum=random), d=0/1 dropped."""
    from m2r.data.curriculum import write_curriculum
    from m2r.data.shards import read_manifest
    from m2r.scoring.difficulty import read_difficulties

    c = cfg.curriculum
    out = Path(cfg.paths.curriculum_dir)
    settings = {"order": c.order, "drop_solved": c.drop_solved, "drop_unsolved": c.drop_unsolved, "samples_per_shard": c.samples_per_shard, "seed": cfg.seed, "tol": c.tol}
    old = read_manifest(out, "rl") if (out / "rl" / "manifest.json").exists() else None
    if cfg.get("resume", True) and old and old.get("curriculum") == settings:
        log.info("curriculum shards %s are up to date; skipping", out / "rl")
        return {"count": old["count"], "stats": old["stats"], "skipped": True}
    scores = Path(cfg.paths.score_dir) / "difficulty.jsonl"
    if not scores.exists():
        raise FileNotFoundError(f"no difficulty scores at {scores}; run the difficulty step first (stage=pipeline or stage=score)")
    t0 = time.perf_counter()
    m = write_curriculum(_data_root(cfg), "rl", read_difficulties(scores), out, c.order, c.drop_solved, c.drop_unsolved, c.samples_per_shard, cfg.seed, c.tol)
    return {"count": m["count"], "stats": m["stats"], "seconds": round(time.perf_counter() - t0, 1)}


def _heldout(cfg: DictConfig, which: str) -> dict[str, Any]:
    """The model of stage `which` on the held-out split of the run's own data (benchmark scoring, greedy)."""
    from m2r.eval import embedded
    from m2r.eval.runner import score_benchmark, write_outputs

    out = Path(cfg.paths[f"heldout_{which}_dir"])
    if cfg.get("resume", True) and (out / "metrics.json").exists():
        log.info("held-out evaluation %s is complete; skipping", out)
        return json.loads((out / "metrics.json").read_text())
    src = _checkpoint_dir(cfg, which)
    split = cfg.eval.heldout_split
    root = _data_root(cfg)
    if src is None or not (root / split / "manifest.json").exists():
        log.warning("held-out evaluation after %s skipped: %s", which, "no finished checkpoint" if src is None else f"no {split} split in {root}")
        return {"skipped": True}
    t0 = time.perf_counter()
    items = embedded.load(root, split)
    if cfg.eval.limit:
        items = items[: int(cfg.eval.limit)]
    model, processor, label = _load_model(cfg, src)
    responses = _generate_over_ranks(model, processor, items, "m2", cfg, out)
    if responses is None:
        return {"rank_part": True}
    samples, metrics = score_benchmark("embedded", items, responses)
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    write_outputs(out, "embedded", f"after {which} ({label})", samples, metrics)
    log.info("held-out after %s: mean over tasks %.3f (spatial %.3f, general %.3f)", which, metrics["overall"], metrics["spatial"] or 0, metrics["general"] or 0)
    return metrics


def step_report(cfg: DictConfig) -> dict[str, Any]:
    from m2r.report import write_report

    return write_report(Path(cfg.paths.run_dir))


STEPS: dict[str, Callable[[DictConfig], dict[str, Any]]] = {
    "build": step_build, "quality": step_quality, "perceive": step_perceive, "sft": step_sft, "difficulty": step_difficulty, "curriculum": step_curriculum,
    "heldout_sft": partial(_heldout, which="sft"), "grpo": step_grpo, "heldout_grpo": partial(_heldout, which="grpo"),
    "eval": step_eval, "report": step_report,
}


def _single_log_lines() -> None:
    """Under Hydra the root logger already prints and files Lightning's messages; drop Lightning's own console handler."""
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            lg = logging.getLogger(name)
            for h in list(lg.handlers):
                lg.removeHandler(h)
            lg.propagate = True


# Steps that run on every rank (they call trainer.fit); every other step runs on global rank 0
# alone while the other ranks wait for its marker, so under DDP, FSDP or DeepSpeed no two
# processes write the same scores, shards or report.
TRAINER_STEPS = ("perceive", "sft", "grpo")
# Steps that every rank runs on its own slice of the work (m2r.dist), rank 0 gathering the results.
SPLIT_STEPS = ("difficulty", "heldout_sft", "heldout_grpo", "eval")


def _rehearsal_count(cfg: DictConfig) -> int:
    return int(OmegaConf.select(cfg, "sft.rehearsal", default=0) or 0)  # m2r.checks has already refused a bad value


def _before_sft(cfg: DictConfig) -> None:
    """Rank 0, before any rank trains: the perception samples `sft.rehearsal` mixes into SFT (`<sft>/rehearsal`)."""
    if n := _rehearsal_count(cfg):  # kept as they are when there (a finished or resumed SFT), else written
        from m2r.data.perceive import write_rehearsal

        write_rehearsal(Path(cfg.paths.sft_dir) / "rehearsal", n, cfg.seed, int(cfg.perceive.image_size), tuple(cfg.perceive.objects),
                        int(cfg.data.samples_per_shard))


# What global rank 0 does for a trainer step after preparing its folder and before the other ranks may start it.
BEFORE_RANKS: dict[str, Callable[[DictConfig], None]] = {"sft": _before_sft}


def _enter_shared(cfg: DictConfig, step: str, held: ExitStack, ready: Path, run_id: str) -> dict[str, Any] | None:
    """With shared steps (`m2r.shared`): point cfg.paths at the keyed shared folders, link them into the run folder and,
    when `step` is shared, hold its lock until the step has run (in `held`). Returns the state to record, or None."""
    from m2r import shared

    entries = shared.resolve(cfg, step)
    if step not in entries:
        return None
    if not cfg.get("resume", True) or cfg.get("ckpt_path"):
        raise ValueError(f"{'resume=false' if not cfg.get('resume', True) else 'ckpt_path'} with shared steps (shared.dir={cfg.shared.dir}): "
                         "it would redo a step in place, in a folder other jobs of the study read. Say shared.dir=null to run every "
                         "step in this run's own folder, or leave it out to reuse the shared outputs")
    key = entries[step]["key"]

    def still_waiting() -> None:  # the other ranks of this run count their wait from the last of these
        tmp = ready.with_suffix(".tmp")
        tmp.write_text(json.dumps({"run_id": run_id, "waiting": step, "time": time.time()}))
        tmp.replace(ready)

    state = held.enter_context(shared.hold(cfg, step, key, on_wait=still_waiting))
    state |= {"key": key, "dirs": entries[step]["dirs"], "was_complete": shared.complete(cfg, step, key)}
    shared.link(cfg, step)
    shared.record(cfg, step, {"key": key, "dirs": entries[step]["dirs"], "made": None})  # under way (and the run folder knows its shared root)
    if state["was_complete"]:
        log.info("step %s: the shared output %s (key %s) is complete; reusing it", step, next(iter(entries[step]["dirs"].values())), key)
    return state


def _wait_for_rank_zero(marker: Path, run_id: str, step: str, rank: int, timeout_s: float, key: str = "result") -> Any:
    t0 = time.perf_counter()
    log.info("rank %d waits for rank 0 to finish step %s", rank, step)
    while time.perf_counter() - t0 < timeout_s:
        if marker.exists():
            try:
                done = json.loads(marker.read_text())
            except json.JSONDecodeError:
                done = {}  # being written
            if done.get("run_id") == run_id:
                if "waiting" in done:  # rank 0 waits for another run's output (m2r.shared): alive, so the clock restarts
                    t0 = time.perf_counter()
                    time.sleep(1.0)
                    continue
                if "error" in done:
                    raise RuntimeError(f"rank 0 failed in step {step}: {done['error']}")
                return done.get(key)
        time.sleep(1.0)
    raise TimeoutError(f"rank {rank} waited {timeout_s:.0f} s for rank 0 to finish step {step} ({marker}); raise M2R_RANK_WAIT_S if the step is that long")


def run(cfg: DictConfig) -> dict[str, Any]:
    import os

    from m2r import dist as m2r_dist
    from m2r import shared, stepkeys

    from m2r.checks import check_config

    check_config(cfg)
    missing = [s for s in cfg.stage.steps if s not in STEPS]
    if missing:
        raise ValueError(f"stage={cfg.stage.name} runs step(s) {missing} that this version of m2r does not have; it has {list(STEPS)}")
    _single_log_lines()
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rank = m2r_dist.rank_world()[0]
    run_id = m2r_dist.run_id(rank)
    marks = run_dir / ".steps"
    marks.mkdir(exist_ok=True)
    os.environ["M2R_STEP_MARKS"] = str(marks)  # where a failing rank says so (m2r.dist.report_failure)
    results: dict[str, Any] = {}
    timings_path = run_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else []
    this_run: dict[str, float] = {}
    timings.append({"stage": cfg.stage.name, "steps": this_run})
    for step in cfg.stage.steps:
        log.info("=== %s ===", step)
        t0 = time.perf_counter()
        rank = m2r_dist.rank_world()[0]  # the process group's, once a trainer step has made one
        marker, ready = marks / f"{step}.json", marks / f"{step}.ready.json"
        wait_s = float(os.environ.get("M2R_RANK_WAIT_S", 86400))
        with ExitStack() as held:
            if rank == 0:
                try:
                    # paths -> the keyed shared folders; waits while another run makes this output
                    shared_state = _enter_shared(cfg, step, held, ready, run_id)
                    stepkeys.prepare(cfg, step, expect=shared_state and shared_state["key"])  # stale output (other config or inputs) removed before any rank reads it
                    if step in BEFORE_RANKS:
                        BEFORE_RANKS[step](cfg)
                except Exception as e:
                    for m in (marker, ready):
                        m.write_text(json.dumps({"run_id": run_id, "error": f"{type(e).__name__}: {e}"}))
                    raise
                tmp = ready.with_suffix(".tmp")
                tmp.write_text(json.dumps({"run_id": run_id, "result": {}, "paths": shared.resolved_paths(cfg)}))
                tmp.replace(ready)
            elif step in TRAINER_STEPS or step in SPLIT_STEPS:
                shared.adopt(cfg, _wait_for_rank_zero(ready, run_id, f"{step} (preparing its output folder)", rank, wait_s, key="paths"))
            if rank != 0 and step not in TRAINER_STEPS:
                if step in SPLIT_STEPS:
                    try:
                        STEPS[step](cfg)  # this rank's slice; rank 0 gathers and writes the step's result
                    except Exception as e:
                        m2r_dist.report_failure(rank, step, e)
                        raise
                results[step] = _wait_for_rank_zero(marker, run_id, step, rank, wait_s)
                continue
            try:
                results[step] = STEPS[step](cfg)
            except Exception as e:
                if rank == 0:
                    marker.write_text(json.dumps({"run_id": run_id, "error": f"{type(e).__name__}: {e}"}))
                raise
            this_run[step] = round(time.perf_counter() - t0, 1)
            if rank == 0:
                if shared_state is not None:
                    shared_state["made"] = not shared_state.pop("was_complete")
                    shared.record(cfg, step, {**shared_state, "seconds": this_run[step]})
                tmp = marker.with_suffix(".tmp")
                tmp.write_text(json.dumps({"run_id": run_id, "result": results[step]}, default=str))
                tmp.replace(marker)
                timings_path.write_text(json.dumps(timings, indent=1))
    return results
