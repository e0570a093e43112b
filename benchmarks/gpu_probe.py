"""Callback for benchmarks/gpu_check.py: peak GPU memory, seconds per optimizer step, and whether
the parameters moved, written to `<path>` as JSON when training ends (rank 0)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import torch


class GPUProbe(L.Callback):
    def __init__(self, path: str, watch: int = 4):
        self.path, self.watch = Path(path), watch
        self.times: list[float] = []

    def _params(self, pl_module):
        ps = [p for p in pl_module.parameters() if p.requires_grad]
        picks = [ps[i * (len(ps) - 1) // max(1, self.watch - 1)] for i in range(self.watch)]
        return [(p.full_tensor() if hasattr(p, "full_tensor") else p).detach().float().flatten()[:4096].clone() for p in picks]

    def on_train_start(self, trainer, pl_module) -> None:
        torch.cuda.reset_peak_memory_stats()
        self.before = self._params(pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        torch.cuda.synchronize()
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self.t0)

    def on_train_end(self, trainer, pl_module) -> None:
        after = self._params(pl_module)
        moved = [float((a - b).abs().max()) for a, b in zip(after, self.before)]
        # ZeRO-2/3 hold partitions: a watched tensor may be empty on this rank; 0 then means nothing to compare
        row = {"steps": trainer.global_step, "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30, "moved": moved,
               "s_per_step": sum(self.times[1:]) / max(1, len(self.times) - 1) if len(self.times) > 1 else (self.times or [None])[0],
               "loss": {k: float(v) for k, v in trainer.callback_metrics.items() if k.endswith("loss")}}
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(row, indent=1))
