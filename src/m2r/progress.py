"""Rich progress bars for long work outside the Lightning trainer (building, importing, scoring)."""

from __future__ import annotations

import os
import sys

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress() -> Progress:
    """A progress bar; silent when M2R_NO_PROGRESS is set (tests) or output is not a terminal in CI."""
    disable = bool(os.environ.get("M2R_NO_PROGRESS")) or (os.environ.get("CI") and not sys.stderr.isatty())
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        disable=bool(disable), transient=False,
    )
