"""Callbacks that steer GRPO (paper section 3.1.3) and record its rollouts.

`CosineKLAnnealing` pushes its value into the module before the step and keeps its last value in
the checkpoint. It acts only on modules that have the attribute it sets, so a callbacks config
shared with SFT does nothing there. Eq. 6 (advantage reweighting) is not a callback: its weights
do not change over steps, so the module takes it from `algo.adv_reweighting` / `algo.adv_sigma`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L

from m2r.rl.core import cosine_kl_coef


class CosineKLAnnealing(L.Callback):
    """Eq. 7: beta_t = beta_min + (beta_max - beta_min) * (1 + cos(pi t / T)) / 2, t = optimizer steps
    taken so far; T defaults to `trainer.max_steps`. The peak beta_max is the module's `beta`
    (`algo.beta`), the one place the KL coefficient is set: `algo=dapo` (beta 0) has no KL with
    this callback too."""

    def __init__(self, beta_min: float = 0.0, T: int | None = None):
        if beta_min < 0:
            raise ValueError(f"callbacks.kl_annealing.beta_min={beta_min}: a KL coefficient is >= 0")
        if T is not None and T < 1:
            raise ValueError(f"callbacks.kl_annealing.T={T}: the schedule's length is at least 1 step (null: trainer.max_steps)")
        self.beta_min, self.T = beta_min, T
        self.last: dict[str, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not hasattr(pl_module, "kl_coef"):
            return
        beta_max = float(pl_module.hparams.beta)
        if self.beta_min > beta_max:
            raise ValueError(f"callbacks.kl_annealing.beta_min={self.beta_min} exceeds algo.beta={beta_max}, the schedule's peak; "
                             "lower beta_min or raise algo.beta")
        T = self.T or trainer.max_steps
        beta = cosine_kl_coef(trainer.global_step, T, beta_max, self.beta_min)
        pl_module.kl_coef = beta
        self.last = {"t": trainer.global_step, "T": T, "beta": beta, "beta_max": beta_max}

    def state_dict(self) -> dict[str, Any]:
        return {"beta_min": self.beta_min, "T": self.T, "last": self.last}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last = dict(state_dict.get("last", {}))  # the settings come from this run's config


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
