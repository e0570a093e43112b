"""report.md's held-out table: the blind column per task, its family means, and runs from before blind existed."""

from __future__ import annotations

import json
from pathlib import Path

from m2r.report import write_report


def _metrics(run: Path, which: str, metrics: dict) -> None:
    (run / "eval" / which).mkdir(parents=True, exist_ok=True)
    (run / "eval" / which / "metrics.json").write_text(json.dumps(metrics))


def _row(report: str, name: str) -> list[str]:
    (line,) = [r for r in report.splitlines() if r.startswith(f"| {name} |")]
    return [c.strip() for c in line.strip("|").split("|")]


def test_blind_column_per_task_and_family_means(tmp_path):
    tasks = {"spatial/relation": (0.6, 0.5), "spatial/video/route_plan": (0.2, 0.4), "general/chart": (0.1, 0.3)}  # task: (score, blind)
    m = {f"task/{t}": s for t, (s, _) in tasks.items()} | {f"blind/{t}": b for t, (_, b) in tasks.items()}
    m |= {"spatial": 0.4, "video": 0.2, "general": 0.1, "overall": 0.3}
    _metrics(tmp_path, "heldout_sft", m)
    report = (write_report(tmp_path) and (tmp_path / "report.md").read_text())
    assert "| task | blind | after SFT | after RL | change |" in report
    assert _row(report, "spatial/relation") == ["spatial/relation", "50.0", "60.0", "-", "-"]
    assert _row(report, "spatial")[1] == "45.0"  # mean of the spatial tasks' blind (relation 0.5, route_plan 0.4)
    assert _row(report, "video")[1] == "40.0" and _row(report, "general")[1] == "30.0"
    assert _row(report, "overall")[1] == "40.0"  # every task


def test_a_run_from_before_blind_reports_a_dash(tmp_path):
    _metrics(tmp_path, "heldout_sft", {"task/spatial/relation": 0.6, "spatial": 0.6, "overall": 0.6})
    _metrics(tmp_path, "heldout_grpo", {"task/spatial/relation": 0.7, "spatial": 0.7, "overall": 0.7})
    report = (write_report(tmp_path) and (tmp_path / "report.md").read_text())
    assert _row(report, "spatial/relation") == ["spatial/relation", "-", "60.0", "70.0", "+10.0"]
    assert "`blind` is what" not in report  # the explanation only where there is a column to explain
