"""`MetricHistory`: keeps every logged training metric per step and writes `history.json`.

The run summary (first and last loss, wall time) and the report read it; it also survives a
resume, since it lives in the checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L


class MetricHistory(L.Callback):
    def __init__(self, path: str | Path | None = None, prefix: str = "train/"):
        self.path = Path(path) if path else None
        self.prefix = prefix
        self.rows: list[dict[str, Any]] = []
        self._t0: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        row = {"step": trainer.global_step}
        for k, v in trainer.callback_metrics.items():
            if k.startswith(self.prefix) and v.numel() == 1:
                row[k] = float(v)
        row["time"] = time.perf_counter() - (self._t0 or time.perf_counter())
        self.rows.append(row)

    def on_validation_end(self, trainer, pl_module) -> None:
        vals = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/") and v.numel() == 1}
        if vals and self.rows:
            self.rows[-1].update(vals)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.path and trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.rows, indent=1))

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))
