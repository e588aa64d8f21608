"""The progress bar of ``hub import`` and ``hub watch``: one tqdm bar per file, on stderr, drawn only when
stderr is a terminal (tqdm's ``disable=None``), so logs and pipes get the summary alone.

tqdm: the maintained standard for terminal progress (rate, ETA, resizing, non-TTY handling); the bar shows
the file name and counts only, never content.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from hub.ops.file_import import FileReport


class TqdmProgress:
    """``hub.ops.file_import.Progress`` drawn with tqdm: bytes for files read as a stream, messages for HL7 v2."""

    def __init__(self, stream: TextIO | None = None, disable: bool | None = None) -> None:
        self._stream = stream or sys.stderr
        self._disable = disable
        self._bar: tqdm | None = None
        self._done = 0

    def start(self, report: FileReport, total: int, unit: str) -> None:
        self.finish(report)
        scale = unit == "B"
        self._bar = tqdm(total=total or None, unit=unit, unit_scale=scale, unit_divisor=1024 if scale else 1000,
                         desc=Path(report.path).name, file=self._stream, disable=self._disable, leave=False,
                         dynamic_ncols=True, mininterval=0)  # the importer already ticks at most every 0.2 s
        self._done = 0

    def update(self, done: int, report: FileReport) -> None:
        if self._bar is None:
            return
        self._bar.set_postfix_str(f"{report.read:,} read, {report.events:,} events, "
                                  f"{sum(report.failures.values()):,} failed", refresh=False)
        self._bar.update(max(0, done - self._done))
        self._done = max(self._done, done)

    def finish(self, report: FileReport) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
