"""Typed settings of the engine: how many workers, where, and how long calls take.

``deepaas-run`` and ``deepaas-predict`` build an :class:`EngineSettings`
once from their options (in :mod:`deepaas.cmd`); the engine reads only
this.  It refuses a bad value when it is made, naming the option.  Only the
standard library is imported here: the settings are built before the
workers start.
"""

from __future__ import annotations

import dataclasses

#: Seconds with every worker busy and none taking a new call after which
#: ``/ready`` reports the model ``stalled`` (``--ready-stall-timeout``).
DEFAULT_STALL_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """The ``--workers``, ``--gpus`` and ``--*-timeout`` options of the engine.

    ``workers`` 0 runs models in the API process; ``gpus`` is the option's
    text (``auto``, ``none`` or indices), read against the visible GPUs
    when the device plan is made; ``call_timeout`` is ``--predict-timeout``
    (0: no limit); ``max_queue`` 0 means 64 per worker.
    """

    workers: int = 1
    workers_per_gpu: int = 1
    gpus: str = "auto"
    warm: bool = True
    max_queue: int = 0
    call_timeout: float = 0.0
    ready_stall_timeout: float = DEFAULT_STALL_TIMEOUT

    def __post_init__(self) -> None:
        for option, value in (
            ("--workers", self.workers),
            ("--max-queue", self.max_queue),
            ("--predict-timeout", self.call_timeout),
            ("--ready-stall-timeout", self.ready_stall_timeout),
        ):
            if value < 0:
                raise ValueError(f"{option} must be >= 0 (got {value})")
        if self.workers_per_gpu < 1:
            raise ValueError(
                f"--workers-per-gpu must be >= 1 (got {self.workers_per_gpu})"
            )

    @property
    def max_waiting(self) -> int:
        """Calls that may wait for a worker of one model (``--max-queue``)."""
        return self.max_queue or 64 * max(self.workers, 1)


__all__ = ["DEFAULT_STALL_TIMEOUT", "EngineSettings"]
