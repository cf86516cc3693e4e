"""What a batch run is told (:class:`BatchOptions`) and what it reports
(:class:`Summary`, whose ``exit_code`` the command line returns)."""

from __future__ import annotations

import dataclasses
import logging
import signal
from pathlib import Path
from typing import Any

from deepaas.batch.progress import format_duration
from deepaas.batch.sharding import Shard
from deepaas.model.loading import ModelSpec


class UsageError(ValueError):
    """The command line does not fit the model or the inputs (exit status 2)."""


@dataclasses.dataclass
class BatchOptions:
    """How to run one batch task; validated by the command line."""

    output_dir: Path
    model: ModelSpec
    fixed_args: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    file_arg: str | None = None
    accept: str | None = None
    workers: int = 1
    worker_envs: list[dict[str, str]] | None = None
    warm: bool = True
    shard: Shard = dataclasses.field(default_factory=Shard)
    retry_errors: bool = False
    fail_fast: bool = False
    progress_interval: float = 30.0
    progress_bar: bool | None = None
    term_grace: float = 20.0
    log_level: int = logging.INFO
    #: Start a new run in ``output_dir`` (``--restart``): the token that makes
    #: it new (see :func:`deepaas.batch.runfile.restart_token`); None resumes.
    restart: str | None = None
    #: How the inputs were given, recorded in ``run.json`` for merge.
    run_inputs: dict[str, Any] | None = None


@dataclasses.dataclass
class Summary:
    """What a run did, for the final message and the exit status."""

    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped_ok: int = 0
    skipped_failed: int = 0
    seconds: float = 0.0
    signal_name: str | None = None
    stopped_early: bool = False
    results_file: str = ""

    @property
    def not_done(self) -> int:
        return (
            self.total - self.ok - self.failed - self.skipped_ok - self.skipped_failed
        )

    @property
    def exit_code(self) -> int:
        if self.signal_name:
            return 128 + int(getattr(signal, self.signal_name, signal.SIGTERM))
        if self.failed or self.skipped_failed or self.not_done:
            return 1
        return 0

    def line(self) -> str:
        parts = [f"{self.ok} ok", f"{self.failed} failed"]
        if self.skipped_ok:
            parts.append(f"{self.skipped_ok} skipped (done earlier)")
        if self.skipped_failed:
            parts.append(
                f"{self.skipped_failed} skipped (failed earlier; use --retry-errors)"
            )
        if self.not_done:
            parts.append(f"{self.not_done} not done")
        text = (
            f"{self.total} inputs: {', '.join(parts)} in "
            f"{format_duration(self.seconds)}; results in {self.results_file}"
        )
        if self.signal_name:
            text += f"; stopped by {self.signal_name}: rerun the same command to resume"
        elif self.stopped_early:
            text += "; stopped at the first failure (--fail-fast)"
        return text
