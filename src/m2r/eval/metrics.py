"""Evaluation metrics as torchmetrics Metrics, so per-rank results reduce correctly under DDP."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class GroupAccuracy(Metric):
    """Accuracy overall and per group (subject, task, level, ...): sums of correct and counted per
    group index, summed across ranks."""

    full_state_update = False

    def __init__(self, groups: list[str]):
        super().__init__()
        self.groups = list(groups)
        self.index = {g: i for i, g in enumerate(self.groups)}
        self.add_state("correct", default=torch.zeros(len(self.groups), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(len(self.groups), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, group: str, score: float) -> None:
        i = self.index[group]
        self.correct[i] += float(score)
        self.total[i] += 1

    def compute(self) -> dict[str, float]:
        out = {"overall": float(self.correct.sum() / self.total.sum().clamp(min=1))}
        for g, c, t in zip(self.groups, self.correct.tolist(), self.total.tolist()):
            if t:
                out[g] = c / t
        out["count"] = float(self.total.sum())
        return out


class RowResults(Metric):
    """Per-row (row index, score) pairs gathered from every rank, for metrics that need whole
    problems (We-Math's four dimensions, DynaMath's worst case)."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("rows", default=[], dist_reduce_fx="cat")

    def update(self, row_index: int, score: float) -> None:
        self.rows.append(torch.tensor([[float(row_index), float(score)]], dtype=torch.float64))

    def compute(self) -> list[tuple[int, float]]:
        rows = self.rows if isinstance(self.rows, torch.Tensor) else (torch.cat(self.rows) if self.rows else torch.zeros(0, 2))
        return [(int(i), float(s)) for i, s in rows.tolist()]
