"""Config checks that run right after Hydra composes the config, before any step starts.

The `model`, `data`, `reward`, `algo`, `curriculum` and `mix` groups have structured schemas
(`m2r.config`), so Hydra already refuses a misspelt key or a value of the wrong type there. This
module adds what a schema cannot say, and the top-level sections that have no schema (`sft`,
`grpo`, `quality`, `eval`, `trainer`, `callbacks`): every numeric key has a type and a range, and
a wrong one is an error naming the key, its value and what it must be, e.g.

    grpo.prompts_per_step=-2: must be an integer >= 1

instead of a raw TypeError or IndexError minutes later. It also refuses settings that would
silently mean something else (a model path no model config reads, a route without its accuracy,
a KL floor above its peak).
"""

from __future__ import annotations

import math
import re
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


class ConfigError(ValueError):
    """A config value that cannot mean what its key says; the message names the key and the fix."""


_MISSING = object()
# key -> (kind, low, high, may be null); kind "int" | "float"; a bound in parentheses is exclusive.
RULES: dict[str, tuple[str, str | None, str | None, bool]] = {
    "seed": ("int", "0", None, False),
    "trainer.max_steps": ("int", "1", None, False),
    "trainer.log_every_n_steps": ("int", "1", None, False),
    "trainer.accumulate_grad_batches": ("int", "1", None, False),
    "trainer.gradient_clip_val": ("float", "0", None, True),  # 0 or null: no clipping
    "trainer.num_nodes": ("int", "1", None, False),
    "sft.max_steps": ("int", "1", None, False),
    "sft.module.lr": ("float", "(0", None, False),
    "sft.module.weight_decay": ("float", "0", None, False),
    "sft.module.warmup_steps": ("int", "0", None, False),
    "sft.module.loss_chunk": ("int", "1", None, False),
    "sft.rehearsal": ("int", "0", None, False),
    "grpo.max_steps": ("int", "1", None, False),
    "grpo.prompts_per_step": ("int", "1", None, False),
    "grpo.module.max_new_tokens": ("int", "1", None, False),
    "grpo.module.temperature": ("float", "(0", None, False),
    "grpo.module.top_p": ("float", "(0", "1", False),
    "grpo.module.micro_batch_size": ("int", "1", None, False),
    "grpo.module.logprob_chunk": ("int", "1", None, False),
    "grpo.module.lr": ("float", "(0", None, False),
    "grpo.module.weight_decay": ("float", "0", None, False),
    "grpo.module.warmup_steps": ("int", "0", None, False),
    "grpo.module.rollout_log_rows": ("int", "0", None, False),
    "grpo.module.max_prompt_length": ("int", "16", None, True),
    "rollout.max_rows": ("int", "1", None, True),
    "algo.G": ("int", "2", None, False),
    "algo.eps_low": ("float", "0", "(1", False),
    "algo.eps_high": ("float", "0", None, False),
    "algo.beta": ("float", "0", None, False),
    "algo.mu": ("int", "1", None, False),
    "algo.adv_sigma": ("float", "(0", None, False),
    "data.train_per_task": ("int", "0", None, False),
    "data.val_per_task": ("int", "0", None, False),
    "data.rl_per_task": ("int", "0", None, False),
    "data.test_per_task": ("int", "0", None, False),
    "data.noisy_trace_ratio": ("float", "0", "1", False),
    "data.mc_ratio": ("float", "0", "1", False),
    "data.image_size": ("int", "28", None, False),
    "data.samples_per_shard": ("int", "1", None, False),
    "data.max_question_chars": ("int", "1", None, False),
    "data.max_answer_chars": ("int", "1", None, False),
    "data.max_cot_chars": ("int", "1", None, False),
    "data.max_image_pixels": ("int", "784", None, False),
    "data.batch_size": ("int", "1", None, False),
    "data.num_workers": ("int", "0", None, False),
    "data.shuffle_buffer": ("int", "1", None, False),
    "data.max_length": ("int", "16", None, False),
    "model.min_pixels": ("int", "784", None, False),
    "model.max_pixels": ("int", "784", None, False),
    "model.tiny.initializer_range": ("float", "(0", None, False),  # 0 would silently become HF's 0.02
    "model.lora.r": ("int", "1", None, False),
    "model.lora.alpha": ("float", "(0", None, False),
    "model.lora.dropout": ("float", "0", "(1", False),
    "reward.number.rel_tol": ("float", "0", None, False),
    "reward.number.abs_tol": ("float", "0", None, False),
    "reward.ednm.gamma": ("float", "(0", None, False),
    "reward.ednm.lam": ("float", "(0", None, False),
    "reward.ednm.eps": ("float", "(0", None, False),
    "reward.expression.timeout_s": ("float", "(0", None, False),
    "reward.expression.workers": ("int", "1", None, False),
    "curriculum.tol": ("float", "0", "(0.5", False),
    "curriculum.samples_per_shard": ("int", "1", None, False),
    "curriculum.scoring.N": ("int", "1", None, False),
    "curriculum.scoring.batch_size": ("int", "1", None, False),
    "curriculum.scoring.max_new_tokens": ("int", "1", None, False),
    "curriculum.scoring.temperature": ("float", "(0", None, False),
    "curriculum.scoring.top_p": ("float", "(0", "1", False),
    "quality.threshold": ("float", "0", "1", False),
    "quality.min_words": ("int", "0", None, False),
    "quality.max_words": ("int", "1", None, False),
    "quality.min_steps": ("int", "0", None, False),
    "quality.max_steps": ("int", "1", None, False),
    "quality.min_distinct_4grams": ("float", "0", "1", False),
    "quality.verification_target": ("int", "1", None, False),
    "eval.batch_size": ("int", "1", None, False),
    "eval.max_new_tokens": ("int", "1", None, False),
    "eval.limit": ("int", "1", None, True),
    "callbacks.checkpoint.every_n_train_steps": ("int", "0", None, True),  # 0 or null: no step-interval saves
    "callbacks.checkpoint.save_top_k": ("int", "-1", None, False),
    "callbacks.kl_annealing.beta_min": ("float", "0", None, False),
    "callbacks.kl_annealing.T": ("int", "1", None, True),
    "callbacks.rollouts.every_n_steps": ("int", "1", None, False),
    "perceive.max_steps": ("int", "0", None, False),
    "perceive.batch_size": ("int", "1", None, False),
    "perceive.image_size": ("int", "56", None, False),
    "perceive.val_samples": ("int", "0", None, False),
    "perceive.module.lr": ("float", "(0", None, False),
    "perceive.module.weight_decay": ("float", "0", None, False),
    "perceive.module.warmup_steps": ("int", "0", None, False),
    "perceive.module.loss_chunk": ("int", "1", None, False),  # after data.*: batch_size and image_size default to data.*'s
}


def _get(cfg: DictConfig, key: str) -> Any:
    """The value at `key` with interpolations resolved; _MISSING when the key is absent."""
    return OmegaConf.select(cfg, key, default=_MISSING)


def _bound(text: str) -> tuple[float, bool]:
    return float(text.lstrip("(")), text.startswith("(")


def _describe(kind: str, low: str | None, high: str | None) -> str:
    what = "an integer" if kind == "int" else "a number"
    parts = []
    if low is not None:
        parts.append(f"{'>' if low.startswith('(') else '>='} {low.lstrip('(')}")
    if high is not None:
        parts.append(f"{'<' if high.startswith('(') else '<='} {high.lstrip('(')}")
    return what + (" " + " and ".join(parts) if parts else "")


def check_value(key: str, value: Any, kind: str, low: str | None, high: str | None, nullable: bool) -> None:
    """Raise ConfigError unless `value` is of `kind` and within the bounds."""
    if value is None:
        if nullable:
            return
        raise ConfigError(f"{key}=null: must be {_describe(kind, low, high)}")
    ok_type = isinstance(value, int) and not isinstance(value, bool) if kind == "int" else (
        isinstance(value, (int, float)) and not isinstance(value, bool))
    if not ok_type or (kind == "float" and not math.isfinite(value)):
        raise ConfigError(f"{key}={value!r}: must be {_describe(kind, low, high)}" + (" (null to turn it off)" if nullable else ""))
    for text, is_low in ((low, True), (high, False)):
        if text is None:
            continue
        b, open_ = _bound(text)
        bad = (value <= b if open_ else value < b) if is_low else (value >= b if open_ else value > b)
        if bad:
            raise ConfigError(f"{key}={value!r}: must be {_describe(kind, low, high)}")


def check_config(cfg: DictConfig) -> None:
    """Every rule of this module on a composed run config; raises ConfigError on the first failure."""
    for key, (kind, low, high, nullable) in RULES.items():
        value = _get(cfg, key)
        if value is _MISSING:
            continue
        check_value(key, value, kind, low, high, nullable)
    _check_pairs(cfg)
    _check_choices(cfg)
    _check_trainer(cfg)
    _check_model(cfg)
    _check_routes(cfg)
    _check_grpo_init(cfg)
    _check_modules(cfg)


def _check_pairs(cfg: DictConfig) -> None:
    pairs = [("model.min_pixels", "model.max_pixels"), ("quality.min_words", "quality.max_words"), ("quality.min_steps", "quality.max_steps")]
    for lo, hi in pairs:
        a, b = _get(cfg, lo), _get(cfg, hi)
        if a is not _MISSING and b is not _MISSING and a is not None and b is not None and a > b:
            raise ConfigError(f"{lo}={a} exceeds {hi}={b}")
    beta, beta_min = _get(cfg, "algo.beta"), _get(cfg, "callbacks.kl_annealing.beta_min")
    if _get(cfg, "rollout.compile") is True and _get(cfg, "rollout.cache") != "static":
        raise ConfigError("rollout.compile=true needs rollout.cache=static: transformers compiles the decode step only over a "
                          "preallocated cache (add rollout.cache=static)")
    if beta is not _MISSING and beta_min not in (_MISSING, None) and beta_min > beta:
        raise ConfigError(f"callbacks.kl_annealing.beta_min={beta_min} exceeds algo.beta={beta}, the peak of the KL schedule: "
                          "the KL coefficient is set by algo.beta (callbacks=m2 anneals it down to beta_min)")
    objects = _get(cfg, "perceive.objects")
    if objects is not _MISSING:
        from m2r.data.perceive import check_objects

        if not (isinstance(objects, ListConfig) and len(objects) == 2):
            raise ConfigError(f"perceive.objects={objects!r}: give [lo, hi], e.g. perceive.objects=[2,6]")
        try:
            check_objects(objects)
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None
    for key in ("sft.module.betas", "grpo.module.betas", "perceive.module.betas"):
        betas = _get(cfg, key)
        if betas is not _MISSING:
            if not (isinstance(betas, ListConfig) and len(betas) == 2):
                raise ConfigError(f"{key}={betas!r}: must be two numbers in [0, 1), e.g. {key}=[0.9,0.999]")
            for i, b in enumerate(betas):
                check_value(f"{key}[{i}]", b, "float", "0", "(1", False)


# key -> the values it may take
CHOICES: dict[str, tuple[str, ...]] = {
    "algo.aggregation": ("token", "sequence", "constant"),
    "curriculum.order": ("ordered", "random"),
    "curriculum.end_policy": ("repeat_hardest", "drop"),
    "rollout.cache": ("dynamic", "static"),
}


def _check_choices(cfg: DictConfig) -> None:
    for key, allowed in CHOICES.items():
        v = _get(cfg, key)
        if v is not _MISSING and v not in allowed:
            raise ConfigError(f"{key}={v!r}: must be one of {', '.join(allowed)}")


def _check_trainer(cfg: DictConfig) -> None:
    """Lightning's keys that take an int (a count) or a float (a fraction), and the quality weights."""
    for key, what in (("trainer.val_check_interval", "steps"), ("trainer.limit_val_batches", "batches")):
        v = _get(cfg, key)
        if v is _MISSING or v is None:
            continue
        low = 1 if key == "trainer.val_check_interval" else 0
        ok = (isinstance(v, int) and not isinstance(v, bool) and v >= low) or (isinstance(v, float) and (0 < v <= 1 if low else 0 <= v <= 1))
        if not ok:
            raise ConfigError(f"{key}={v!r}: must be an integer >= {low} ({what}) or a fraction in {'(0' if low else '[0'}, 1]")
    devices = _get(cfg, "trainer.devices")
    if isinstance(devices, str) and re.fullmatch(r"\s*(?:-1|\d+(?:\s*,\s*\d+)*\s*,?)\s*", devices) and devices.strip() != "0":
        devices = "auto"  # Lightning's string forms: "2" (a count), "0,1" (device ids)
    if devices is not _MISSING and not (devices == "auto" or isinstance(devices, ListConfig) or
                                        (isinstance(devices, int) and not isinstance(devices, bool) and (devices >= 1 or devices == -1))):
        raise ConfigError(f"trainer.devices={devices!r}: must be a count >= 1, -1 (every visible device), auto, or a list of device ids")
    weights = _get(cfg, "quality.weights")
    if isinstance(weights, DictConfig):
        for k, w in weights.items():
            check_value(f"quality.weights.{k}", w, "float", "0", None, False)
        if sum(float(w) for w in weights.values()) <= 0:
            raise ConfigError(f"quality.weights={OmegaConf.to_container(weights)}: at least one weight must be positive")


def _check_model(cfg: DictConfig) -> None:
    m = cfg.get("model")
    if m is None:
        return
    source = str(m.get("source"))
    if m.get("path") and source != "pretrained":
        raise ConfigError(f"model.path={m.path} is set but model={m.get('name')} (source={source}) does not read it: it would build "
                          f"{'the tiny model' if source == 'tiny' else 'a random model'} and ignore the path. To load a checkpoint, "
                          f"choose a model config that reads it: model=qwen2_5_vl model.path={m.path} (or model=m2_reasoning)")
    if m.get("shape") and source != "random":
        raise ConfigError(f"model.shape={m.shape} is read only by source=random models (model=qwen2_5_vl_3b_random or _7b_random); "
                          f"model={m.get('name')} has source={source}")


def _check_routes(cfg: DictConfig) -> None:
    from m2r.rewards.router import FUNCTIONS

    r = cfg.get("reward")
    if r is None:
        return
    for i, route in enumerate(r.get("routes") or []):
        where = f"reward.routes[{i}] (task={route.get('task')}, answer_type={route.get('answer_type')})"
        if OmegaConf.is_missing(route, "accuracy") or not route.get("accuracy"):
            raise ConfigError(f"{where} names no accuracy function: set its `accuracy` to the function whose value is the sample's "
                              f"accuracy (Eq. 6, difficulty, reports), one of {sorted(FUNCTIONS)}")
        for name in [*(route.get("weights") or {}), route.accuracy]:
            if name not in FUNCTIONS:
                raise ConfigError(f"{where} uses {name!r}, which is not a reward function; have {sorted(FUNCTIONS)}")


def _check_grpo_init(cfg: DictConfig) -> None:
    init = _get(cfg, "grpo.init")
    if init is _MISSING:
        return
    if init is None or init == "":
        raise ConfigError("grpo.init=null: say where GRPO starts: auto (this run's SFT output), scratch (model.* as configured, "
                          "random weights for the tiny and random models), or a local checkpoint folder")


# What each stage passes to its module itself (positionally or by keyword); a YAML key for one of these is refused.
_STAGE_ARGS = {
    "sft": {"model_factory": "the stage (model.*)"},
    "perceive": {"model_factory": "the stage (model.*)"},
    "grpo": {"policy_factory": "the stage (model.* or grpo.init)", "processor": "the stage (model.*)", "router": "the stage (reward.*)",
             "ref_factory": "the stage (model.*, when algo.beta > 0)", "seed": "seed", "max_grad_norm": "trainer.gradient_clip_val",
             "ref_from_base": "the stage (model.lora.enabled)", "engine": "rollout/ (rollout=hf)"},
}


def _check_modules(cfg: DictConfig) -> None:
    """`sft.module` and `grpo.module` (with the algo/ keys merged in) are constructor calls: every key must be an argument
    of `_target_` that the stage does not set itself, so a typo fails here and not after the build."""
    import importlib
    import inspect

    for stage in ("perceive", "sft", "grpo"):
        node = _get(cfg, f"{stage}.module")
        if node is _MISSING:
            continue
        if not isinstance(node, DictConfig) or not node.get("_target_"):
            raise ConfigError(f"{stage}.module must be a constructor config with a _target_ (e.g. _target_: m2r.modules.{'grpo' if stage == 'grpo' else 'sft'}."
                              f"{'GRPOModule' if stage == 'grpo' else 'SFTModule'}); got {node!r}")
        target = str(node._target_)
        mod_name, _, attr = target.rpartition(".")
        try:
            cls = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError, ValueError) as e:
            raise ConfigError(f"{stage}.module._target_={target}: cannot import it ({e})") from None
        params = inspect.signature(cls).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        for k in node:
            if str(k).startswith("_") and k != "_target_":
                raise ConfigError(f"{stage}.module.{k}: the stage builds the module itself (no {k}); remove the key")
        keys = [(f"{stage}.module.{k}", k) for k in node if k != "_target_"]
        if stage == "grpo" and isinstance(cfg.get("algo"), DictConfig):
            for k in cfg.algo:
                if k in node:
                    raise ConfigError(f"grpo.module.{k}: set by the algo/ group (algo.{k}={cfg.algo[k]} wins); write algo.{k}=... instead")
            keys += [(f"algo.{k}", k) for k in cfg.algo]
        for where, k in keys:
            if k in _STAGE_ARGS[stage]:
                raise ConfigError(f"{where}: set by {_STAGE_ARGS[stage][k]}, not by the module config; remove the key")
            if k not in params and not takes_any:
                known = sorted(n for n in params if n not in _STAGE_ARGS[stage] and n != "self")
                raise ConfigError(f"{where}: {attr} has no argument {k!r}; its arguments are {', '.join(known)}")
