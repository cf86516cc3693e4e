"""Typed settings of trainings and prediction jobs.

``deepaas-run`` builds these once from its options (in :mod:`deepaas.cmd`)
and hands them to :func:`deepaas.training.training_service_from_settings`
and :func:`deepaas.jobs.job_service_from_settings`; nothing below the
command line reads the configuration object.  Each dataclass refuses a bad
value when it is made, with the message the user sees, naming the option.

This module imports only the standard library: deepaas-run builds its
settings before its workers start.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

#: Default cap of a training's log (``--train-log-max-bytes``).
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
#: Smallest cap the log writer can keep (a head, a marker and a tail).
MIN_MAX_BYTES = 16 * 1024

Backend = Literal["local", "slurm"]
BACKENDS: tuple[str, ...] = ("local", "slurm")


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/deepaas``, else ``~/.local/state/deepaas``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "deepaas"


def check_max_bytes(max_bytes: int) -> None:
    """Refuse a log cap the writer cannot keep, naming the option."""
    if max_bytes != 0 and max_bytes < MIN_MAX_BYTES:
        raise ValueError(
            f"--train-log-max-bytes must be 0 (no cap) or >= {MIN_MAX_BYTES} "
            f"(got {max_bytes})"
        )


def _check_not_negative(*pairs: tuple[str, float]) -> None:
    for option, value in pairs:
        if value < 0:
            raise ValueError(f"{option} must be >= 0 (got {value})")


@dataclasses.dataclass(frozen=True)
class SlurmSettings:
    """What every job asks SLURM for (``--slurm-*`` options)."""

    partition: str = ""
    account: str = ""
    qos: str = ""
    time: str = ""
    cpus: int = 0
    mem: str = ""
    gpu_request: str = "gpus"
    sbatch_lines: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    python: str = ""
    poll_interval: float = 5.0

    def __post_init__(self) -> None:
        if self.gpu_request not in ("gpus", "gres"):
            raise ValueError(
                "--slurm-gpu-request must be 'gpus' or 'gres' "
                f"(got {self.gpu_request!r})"
            )
        if self.poll_interval <= 0:
            raise ValueError(
                f"--slurm-poll-interval must be > 0 (got {self.poll_interval})"
            )
        if self.cpus < 0:
            raise ValueError(f"--slurm-cpus must be >= 0 (got {self.cpus})")


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """How ``deepaas-run`` runs and keeps trainings.

    ``backend`` ``"slurm"`` submits each training as a SLURM job asking for
    ``slurm``; ``log_level`` is the level the training processes log at.
    """

    state_dir: Path = dataclasses.field(default_factory=default_state_dir)
    max_concurrent: int = 0
    max_trainings: int = 32
    timeout: float = 0.0
    cancel_grace: float = 10.0
    keep: int = 0
    keep_days: float = 0.0
    max_log_bytes: int = DEFAULT_MAX_BYTES
    log_level: int = logging.INFO
    backend: Backend = "local"
    slurm: SlurmSettings = SlurmSettings()

    def __post_init__(self) -> None:
        _check_not_negative(
            ("--max-concurrent-trainings", self.max_concurrent),
            ("--train-timeout", self.timeout),
            ("--train-cancel-grace", self.cancel_grace),
            ("--keep-trainings", self.keep),
            ("--keep-trainings-days", self.keep_days),
            ("--max-trainings", self.max_trainings),
        )
        check_max_bytes(self.max_log_bytes)
        _check_backend(self.backend)


@dataclasses.dataclass(frozen=True)
class PredictJobSettings:
    """How ``deepaas-run`` runs and keeps prediction jobs.

    Jobs share the trainings' state directory, retention (``keep``,
    ``keep_days``) and backend; the limits are their own.
    """

    state_dir: Path = dataclasses.field(default_factory=default_state_dir)
    max_jobs: int = 32
    max_stored: int = 1000
    max_concurrent: int = 0
    keep: int = 0
    keep_days: float = 0.0
    log_level: int = logging.INFO
    backend: Backend = "local"
    slurm: SlurmSettings = SlurmSettings()

    def __post_init__(self) -> None:
        _check_not_negative(
            ("--max-predict-jobs", self.max_jobs),
            ("--max-stored-predict-jobs", self.max_stored),
            ("--max-concurrent-predict-jobs", self.max_concurrent),
            ("--keep-trainings", self.keep),
            ("--keep-trainings-days", self.keep_days),
        )
        _check_backend(self.backend)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(
            f"--train-backend must be 'local' or 'slurm' (got {backend!r})"
        )


__all__ = [
    "DEFAULT_MAX_BYTES",
    "MIN_MAX_BYTES",
    "PredictJobSettings",
    "SlurmSettings",
    "TrainingSettings",
    "check_max_bytes",
    "default_state_dir",
]
