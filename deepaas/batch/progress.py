"""Progress of a batch run: a tqdm bar on a terminal, log lines elsewhere.

SLURM writes a job's standard error to a file, where a progress bar is
noise; there, one line every ``interval`` seconds says how far the run is,
how fast it goes and when it should end.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import IO, Any

LOG = logging.getLogger("deepaas.predict")


def format_duration(seconds: float) -> str:
    """``1h02m03s``, ``4m05s`` or ``6.7s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s"


class Progress:
    """Counts finished inputs and shows it as the output stream allows."""

    def __init__(
        self,
        total: int,
        *,
        interval: float = 30.0,
        stream: IO[str] | None = None,
        bar: bool | None = None,
    ) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._interval = interval
        self._next_log = self.started + interval
        out = stream if stream is not None else sys.stderr
        if bar is None:
            bar = hasattr(out, "isatty") and out.isatty()
        self._bar: Any = None
        self._redirect: Any = None
        if bar and total:
            from tqdm import tqdm

            try:
                size = os.get_terminal_size(out.fileno())
            except (OSError, ValueError, AttributeError):
                size = os.terminal_size((0, 0))
            # A terminal that reports no size (some ptys) gets a fixed one:
            # tqdm hides every bar of a screen with zero rows.
            sizing: dict[str, Any] = (
                {"dynamic_ncols": True}
                if size.columns > 0 and size.lines > 0
                else {"ncols": 100, "nrows": 24}
            )
            self._bar = tqdm(
                total=total, unit="input", file=out, smoothing=0.05, **sizing
            )
            # Log lines (failed inputs) print above the bar, not through it.
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()

    def update(self, ok: bool) -> None:
        """Count one finished input."""
        self.done += 1
        if not ok:
            self.failed += 1
        if self._bar is not None:
            self._bar.update(1)
            if not ok:
                self._bar.set_postfix_str(f"{self.failed} failed", refresh=False)

    def tick(self) -> None:
        """Log a progress line when one is due (no-op with a bar)."""
        if self._bar is not None or self._interval <= 0:
            return
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + self._interval
            LOG.info("progress: %s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """``120/500 (24.0%), 3 failed, 41.2 inputs/s, ETA 9.2s``."""
        elapsed = max(1e-9, (now or time.monotonic()) - self.started)
        rate = self.done / elapsed
        share = 100.0 * self.done / self.total if self.total else 100.0
        left = self.total - self.done
        eta = format_duration(left / rate) if rate > 0 else "unknown"
        return (
            f"{self.done}/{self.total} ({share:.1f}%), {self.failed} failed, "
            f"{rate:.1f} inputs/s, ETA {eta}"
        )

    def close(self) -> None:
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None
