"""Each recipe step's output keyed by what determines it.

A step's key hashes the part of the config that shapes its output (`STEP_CONFIG`) and the keys of
the outputs it reads (`UPSTREAM`, as recorded on disk: the build's manifests, the upstream steps'
`key.json` once their output is complete; a folder given by path, `grpo.init=/x/hf` or
`curriculum.scoring.model=/x/hf`, by its files' names, sizes and mtimes). An input the step would not
read under this config (the quality filter when `quality.enabled=false`, SFT when GRPO starts from a
given checkpoint) is not part of its key. Before a step runs, `prepare` compares the key with the one its output folder was
made with: the same key leaves the output to the step (skip it when complete, resume it when a
crash cut it short); a different key, or an output of unknown origin, is removed with a warning
that names what changed, and the step redoes it. So a changed config or changed data is never
taken for a complete output, and a checkpoint of another config is never resumed.

Keys chain: a new build changes the quality filter's key, which changes SFT's, and so on down.
`prepare` runs on global rank 0 before any rank starts the step (`m2r.pipeline.run`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

# The global batch (per-device sizes times ranks), the data stream's split and the checkpoint format follow these.
_RANKS = ["trainer.devices", "trainer.num_nodes", "strategy", "trainer.deterministic"]
_EVAL = ["eval.max_new_tokens", "eval.batch_size", "eval.greedy", "eval.limit", "eval.heldout_split", "model.min_pixels", "model.max_pixels", "model.video_min_pixels", "model.video_max_pixels"]
STEP_CONFIG: dict[str, list[str]] = {
    "quality": ["quality"],
    "perceive": ["perceive", "model", "data.max_length", "seed", "trainer.precision", "trainer.accumulate_grad_batches", "trainer.gradient_clip_val", *_RANKS],
    "sft": ["sft", "quality.enabled", "model", "data.batch_size", "data.max_length", "data.shuffle_buffer", "data.num_workers", "seed",
            "trainer.precision", "trainer.accumulate_grad_batches", "trainer.gradient_clip_val", *_RANKS],
    "difficulty": ["curriculum.scoring", "reward", "model", "seed"],
    "curriculum": ["curriculum.order", "curriculum.drop_solved", "curriculum.drop_unsolved", "curriculum.tol", "curriculum.samples_per_shard", "seed"],
    "heldout_sft": _EVAL,
    "grpo": ["grpo", "algo", "rollout", "reward", "mix", "curriculum.end_policy", "callbacks.kl_annealing", "model", "seed",
             "trainer.precision", "trainer.gradient_clip_val", *_RANKS],
    "heldout_grpo": _EVAL,
}
# Keys inside the groups above that change memory, speed or logs but not what a step computes: changing them
# (the usual fixes after running out of memory) keeps a step's output and checkpoints.
NOT_KEYED = frozenset({
    "grpo.module.micro_batch_size", "grpo.module.logprob_chunk", "grpo.module.rollout_log_rows", "sft.module.loss_chunk", "perceive.module.loss_chunk", "perceive.val_samples",
    "model.gradient_checkpointing", "model.attn_implementation", "reward.expression.workers", "grpo.module.max_prompt_length",
    "rollout.max_rows", "rollout.cache", "rollout.compile",
})
# Bumped when a code change makes a step's earlier outputs wrong under the same config, so they are redone, not kept.
# difficulty and grpo 2: rollouts of prompts whose video's temporal positions run past the text after it decoded at
# the wrong rotary positions with the shared prefill (fixed in 5becb9f).
CODE_VERSION: dict[str, int] = {"difficulty": 2, "grpo": 2}
UPSTREAM: dict[str, list[str]] = {
    "quality": ["build"], "perceive": [], "sft": ["build", "quality", "perceive"], "difficulty": ["build", "sft"], "curriculum": ["build", "difficulty"],
    "heldout_sft": ["build", "sft"], "grpo": ["build", "curriculum", "sft"], "heldout_grpo": ["build", "grpo"],
}


def step_dirs(cfg: DictConfig, step: str) -> list[Path]:
    """The folders a step writes; the first holds its `key.json`."""
    p = cfg.paths
    return {
        "quality": [Path(p.quality_dir)], "perceive": [Path(p.perceive_dir)], "sft": [Path(p.sft_dir)], "difficulty": [Path(p.score_dir)],
        "curriculum": [Path(p.curriculum_dir)], "heldout_sft": [Path(p.heldout_sft_dir)],
        "grpo": [Path(p.grpo_dir), Path(p.rollouts_dir)], "heldout_grpo": [Path(p.heldout_grpo_dir)],
    }[step]


def _build_key(cfg: DictConfig) -> str:
    """The data the steps read: a hash of every split's manifest (build key, counts, source files)."""
    root = Path(cfg.data.root or cfg.paths.build_dir)
    h = hashlib.sha256()
    for manifest in sorted(root.glob("*/manifest.json")):
        h.update(manifest.parent.name.encode() + b"\0" + manifest.read_bytes())
    return h.hexdigest()[:16]


# What a step writes last: until it exists, the step's output is not complete, and a downstream key records it as absent.
COMPLETE: dict[str, list[str]] = {
    "quality": ["summary.json", "train/manifest.json"], "perceive": ["summary.json", "hf/COMPLETE"], "sft": ["summary.json", "hf/COMPLETE"], "difficulty": ["summary.json"],
    "curriculum": ["rl/manifest.json"], "grpo": ["summary.json", "hf/COMPLETE"], "heldout_sft": ["metrics.json"], "heldout_grpo": ["metrics.json"],
}


def recorded_key(cfg: DictConfig, step: str, complete: bool = True) -> str | None:
    """The key an output on disk was made with (None: no output, one of unknown origin, or, with
    `complete`, one the step has not finished: `prepare` writes the key before the step runs)."""
    if step == "build":
        return _build_key(cfg)
    d = step_dirs(cfg, step)[0]
    if complete and not all((d / f).exists() for f in COMPLETE.get(step, [])):
        return None
    f = d / "key.json"
    try:
        return json.loads(f.read_text())["key"]
    except (OSError, ValueError, KeyError):
        return None


def step_key(cfg: DictConfig, step: str) -> tuple[str, dict[str, Any]]:
    """(key, what it hashes): the step's config parts, resolved, and its inputs' recorded keys."""
    parts: dict[str, Any] = {}
    for k in STEP_CONFIG[step]:
        v = OmegaConf.select(cfg, k, default=None)
        parts[k] = OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        for skip in NOT_KEYED:
            node, _, leaf = skip.rpartition(".")
            if skip.startswith(k + ".") and isinstance(inner := _dig(parts[k], node[len(k) + 1:]), dict):
                inner.pop(leaf, None)
    model = parts.get("model")
    tiny = model.get("tiny") if isinstance(model, dict) else None
    if isinstance(tiny, dict) and (model.get("source") != "tiny" or tiny.get("initializer_range") == 0.02):
        # Only the tiny model's random init reads it, and 0.02 is what every run before the field had: keys that
        # cannot differ in their weights stay as they were, so existing outputs are kept.
        tiny.pop("initializer_range", None)
    if "trainer.devices" in parts:
        parts["trainer.devices"] = device_count(parts["trainer.devices"])
    if parts.get("trainer.gradient_clip_val") == 0:
        parts["trainer.gradient_clip_val"] = None  # both mean no clipping
    if step == "perceive" and isinstance(model, dict):
        for k in ("freeze_vision", "freeze_projector", "freeze_language", "lora"):  # the warm-up trains every weight (pipeline.step_perceive)
            model.pop(k, None)
    if step == "perceive":
        from m2r.data.tasks import EMBEDDED_VERSION

        parts["generators"] = EMBEDDED_VERSION  # the scenes and listings it trains on
        if isinstance(model, dict) and model.get("source") in ("tiny", "random") and not model.get("processor_path"):
            # the tiny tokenizer (of sources tiny and random) is trained on the generators' text: new generators, another tokenizer
            from m2r.model.tiny import tiny_processor_key

            parts["tokenizer"] = tiny_processor_key(OmegaConf.to_object(cfg.model))
    if step == "sft" and isinstance(parts.get("sft"), dict):
        if not parts["sft"].get("rehearsal"):
            parts["sft"].pop("rehearsal", None)  # none mixed in: the keys of every SFT from before the field
        else:  # the perception samples it mixes in are drawn by these
            from m2r.data.tasks import EMBEDDED_VERSION

            parts["rehearsal_scenes"] = {"image_size": OmegaConf.select(cfg, "perceive.image_size"), "objects": OmegaConf.to_container(cfg.perceive.objects),
                                         "generators": EMBEDDED_VERSION, "samples_per_shard": OmegaConf.select(cfg, "data.samples_per_shard")}
    if step in CODE_VERSION:
        parts["code"] = CODE_VERSION[step]
    parts["inputs"] = _inputs(cfg, step)
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return key, parts


def perceive_on(cfg: DictConfig) -> bool:
    """Whether the run has a perception warm-up: `perceive.max_steps` > 0 and a model built from config (a pretrained
    checkpoint can already see, so `python run.py model=qwen2_5_vl model.path=...` on top of experiment=tiny_m2 skips it).
    Without one, SFT reads no perceive output."""
    steps = int(OmegaConf.select(cfg, "perceive.max_steps", default=0) or 0)
    return steps > 0 and OmegaConf.select(cfg, "model.source", default=None) != "pretrained"


def device_count(devices: Any) -> Any:
    """How many devices `trainer.devices` means on this machine (-1 and auto: every visible GPU, or 1 process on CPU; a list
    or "0,1": its length), so that a key records the ranks a run has, not how they were written."""
    if isinstance(devices, str):
        devices = devices.strip()
    if devices in (-1, "-1", "auto"):
        import torch

        return torch.cuda.device_count() or 1
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    try:
        return int(devices)
    except (TypeError, ValueError):
        return devices


def _inputs(cfg: DictConfig, step: str) -> dict[str, Any]:
    """The recorded keys of the upstream outputs `step` reads under this config, and the state of folders given by path."""
    used = list(UPSTREAM[step])
    paths: dict[str, str] = {}
    if step == "sft" and not OmegaConf.select(cfg, "quality.enabled", default=False):
        used.remove("quality")  # every trace is read; the filter's output is not
    if step == "sft" and not perceive_on(cfg):
        used.remove("perceive")  # SFT starts from model.* itself
    if step == "grpo" and str(OmegaConf.select(cfg, "grpo.init", default="auto")) != "auto":
        used.remove("sft")
        if str(cfg.grpo.init) != "scratch":
            paths["grpo.init"] = str(cfg.grpo.init)
    if step == "quality" and OmegaConf.select(cfg, "quality.judge", default=None):
        paths["quality.judge"] = str(cfg.quality.judge)
    if step == "difficulty" and str(OmegaConf.select(cfg, "curriculum.scoring.model", default="auto")) != "auto":
        used.remove("sft")
        paths["curriculum.scoring.model"] = str(cfg.curriculum.scoring.model)
    out: dict[str, Any] = {u: recorded_key(cfg, u) for u in used}
    out |= {k: folder_state(v) for k, v in paths.items()}
    return out


def folder_state(path: str | Path) -> str | None:
    """A hash of the names, sizes and mtimes of every file under `path` (None when it does not exist): a checkpoint
    folder replaced in place changes it, without reading gigabytes of weights."""
    root = Path(path)
    if not root.exists():
        return None
    h = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root) if f != root else f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _dig(d: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out |= _flat(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: d}


def _changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    a, b = _flat(old), _flat(new)
    changed = [k.removeprefix("inputs.") + (" (its output changed)" if k.startswith("inputs.") else f": {a.get(k)!r} -> {b.get(k)!r}")
               for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "; ".join(changed[:6]) + (f"; and {len(changed) - 6} more" if len(changed) > 6 else "")


def prepare(cfg: DictConfig, step: str, expect: str | None = None) -> str | None:
    """Make `step`'s output folders hold only output of the current key (rank 0, before the step).
    Returns the key (None for steps that are not keyed: build keys itself, eval and report always run).
    `expect`: the key the output folder was chosen by (`m2r.shared`); another key now is an error, not a removal."""
    if step not in STEP_CONFIG or (step == "perceive" and not perceive_on(cfg)):
        return None
    key, parts = step_key(cfg, step)
    if expect is not None and key != expect:
        raise RuntimeError(f"step {step}: its inputs changed while this run waited for them (key {expect} -> {key}: a checkpoint given by path "
                           "was replaced, or another run remade an upstream output); run the command again")
    dirs = step_dirs(cfg, step)
    key_file = dirs[0] / "key.json"
    try:
        old = json.loads(key_file.read_text())
    except (OSError, ValueError):
        old = None
    if old is not None and old.get("key") == key:
        return key
    for d in dirs:
        if d.is_symlink() and not d.exists():
            d.unlink()  # a link to a shared folder that is gone
    present = [d for d in dirs if d.exists() and any(d.iterdir())]
    if present:
        why = _changes(old.get("config", {}), parts) if old else "it has no key.json (made by an older m2r or copied in)"
        log.warning("step %s: the output in %s was made from other inputs (%s); removing it and redoing the step",
                    step, ", ".join(map(str, present)), why)
        for d in present:
            d.unlink() if d.is_symlink() else shutil.rmtree(d)  # a link into a shared folder: the link goes, not what other runs read
    dirs[0].mkdir(parents=True, exist_ok=True)
    tmp = key_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "config": parts}, indent=1, sort_keys=True, default=str))
    tmp.replace(key_file)
    return key
