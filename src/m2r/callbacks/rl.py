"""Callbacks that steer GRPO (paper section 3.1.3) and record its rollouts.

Each pushes its value into the module before the step, logs it, and keeps its state in the
checkpoint. They act only on modules that have the attribute they set, so a callbacks config
shared with SFT does nothing there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L

from m2r.rl.core import cosine_kl_coef


class CosineKLAnnealing(L.Callback):
    """Eq. 7: beta_t = beta_min + (beta_max - beta_min) * (1 + cos(pi t / T)) / 2, t = optimizer steps
    taken so far; T defaults to `trainer.max_steps`."""

    def __init__(self, beta_max: float = 0.01, beta_min: float = 0.0, T: int | None = None):
        self.beta_max, self.beta_min, self.T = beta_max, beta_min, T
        self.last: dict[str, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not hasattr(pl_module, "kl_coef"):
            return
        T = self.T or trainer.max_steps
        beta = cosine_kl_coef(trainer.global_step, T, self.beta_max, self.beta_min)
        pl_module.kl_coef = beta
        self.last = {"t": trainer.global_step, "T": T, "beta": beta}

    def state_dict(self) -> dict[str, Any]:
        return {"beta_max": self.beta_max, "beta_min": self.beta_min, "T": self.T, "last": self.last}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.beta_max, self.beta_min, self.T = state_dict["beta_max"], state_dict["beta_min"], state_dict["T"]
        self.last = dict(state_dict.get("last", {}))


class AdvantageReweighting(L.Callback):
    """Eq. 6: each group's advantages scaled by sigma * p (1 - p), p its mean accuracy reward,
    so groups near p = 0.5 (the most informative) weigh most. `enabled=false` for the ablation."""

    def __init__(self, sigma: float = 4.0, enabled: bool = True):
        self.sigma, self.enabled = sigma, enabled

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if hasattr(pl_module, "adv_weight_sigma"):
            pl_module.adv_weight_sigma = self.sigma if self.enabled else None

    def state_dict(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "enabled": self.enabled}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.sigma, self.enabled = state_dict["sigma"], state_dict["enabled"]


class RolloutLogger(L.Callback):
    """Every `every_n_steps` optimizer steps, the latest rollouts (prompt id, task, response, each
    reward, advantage) go to `<dirpath>/step<step>.jsonl`."""

    def __init__(self, dirpath: str | None = None, every_n_steps: int = 10):
        self.dirpath, self.every = dirpath, every_n_steps
        self._last_written = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        rows = getattr(pl_module, "last_rollouts", None)
        step = trainer.global_step
        if not rows or not self.dirpath or not trainer.is_global_zero:
            return
        if step // self.every == self._last_written // self.every and self._last_written >= 0:
            return
        path = Path(self.dirpath)
        path.mkdir(parents=True, exist_ok=True)
        with open(path / f"step{step:06d}.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        self._last_written = step
