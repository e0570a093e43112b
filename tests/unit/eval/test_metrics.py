"""Evaluation metrics reduce across ranks: two ranks' states merged equal one rank seeing everything."""

from __future__ import annotations

import pytest

from m2r.eval.metrics import GroupAccuracy, RowResults


def test_group_accuracy_merges_like_a_single_process():
    rows = [("x", 1.0), ("y", 0.0), ("x", 0.0), ("x", 1.0), ("y", 1.0)]
    single = GroupAccuracy(["x", "y"])
    for g, s in rows:
        single.update(g, s)
    rank0, rank1 = GroupAccuracy(["x", "y"]), GroupAccuracy(["x", "y"])
    for i, (g, s) in enumerate(rows):
        (rank0 if i % 2 == 0 else rank1).update(g, s)
    rank0.merge_state(rank1)  # what the DDP sync (dist_reduce_fx="sum") does
    assert rank0.compute() == pytest.approx(single.compute())
    assert single.compute() == pytest.approx({"overall": 0.6, "x": 2 / 3, "y": 0.5, "count": 5.0})


def test_row_results_gather_every_rank():
    a, b = RowResults(), RowResults()
    a.update(0, 1.0)
    a.update(2, 0.0)
    b.update(1, 0.5)
    a.merge_state(b)
    assert sorted(a.compute()) == [(0, 1.0), (1, 0.5), (2, 0.0)]
