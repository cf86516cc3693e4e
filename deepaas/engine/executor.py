"""Where model calls run: the Executor interface the API talks to.

The HTTP layer talks to one :class:`Executor` per served model and never to
the model itself.  Two implementations exist:

* :class:`deepaas.engine.in_process.InProcessExecutor` (``--workers 0``, or
  a model declaring ``deepaas_execution = "thread"`` or ``"async"``): the
  model lives in the API process; synchronous calls run in a thread pool,
  coroutine models (and ``"async"`` ones) run on the event loop.  No
  process hop, no pickling: the fastest path for light or thread-safe
  models.
* :class:`deepaas.engine.process_pool.ProcessPool` (``--workers N``): N spawned
  processes, each importing and warming the model once; the API process
  stays small and a crashing model cannot take the server down.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import json
from typing import Any

from deepaas.model.description import ModelDescription
from deepaas.model.files import UploadedFile
from deepaas.model.loading import ModelSpec
from deepaas.model.wrapper import (
    PredictOutcome,
    RawArguments,
    to_json_bytes,
)

#: Why a worker was restarted (``ExecutorStats.restarts``' keys, and the
#: ``cause`` label of ``deepaas_worker_restarts_total``).
RESTART_CAUSES = (
    "timeout",
    "signal",
    "exit",
    "start_failed",
    "cancelled",
    "gpu_failed",
)


@dataclasses.dataclass
class ExecutorStats:
    """What an executor counts since it was built, for ``/metrics``.

    Plain counters bumped on the event loop where the event happens (a few
    per crash, timeout or batch, nothing per ordinary call) and read when
    the metrics are scraped.
    """

    #: Calls answered 504 for exceeding ``--predict-timeout``.
    timeouts: int = 0
    #: Worker restarts by cause: ``timeout``, ``signal``, ``exit``,
    #: ``start_failed`` (a restart whose worker did not come up),
    #: ``cancelled``, ``gpu_failed`` (it answered that its GPU failed, and
    #: exited to be replaced).
    restarts: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )
    #: Batches sent to ``predict_batch``, by size.
    batch_sizes: collections.Counter[int] = dataclasses.field(
        default_factory=collections.Counter
    )
    #: Calls whose caller went away (its client disconnected): they left
    #: the queue, or the worker's answer was dropped.
    abandoned: int = 0
    #: Predictions answered :class:`~deepaas.exceptions.GpuOutOfMemory`.
    out_of_memory: int = 0


def checked_stall_timeout(value: float) -> float:
    """``--ready-stall-timeout`` as given, or ValueError when it is negative."""
    if value < 0:
        raise ValueError(f"--ready-stall-timeout must be >= 0 (got {value})")
    return value


def stall(state: dict[str, Any], stalled_for: float, timeout: float) -> None:
    """Add ``stalled`` (and how long) to a ``status()`` dict.

    A model is stalled when, for longer than ``timeout`` seconds (0: never),
    every worker was busy and none could take a new call: from outside,
    what a hung ``predict`` looks like.
    """
    state["stalled"] = bool(timeout) and stalled_for > timeout
    if state["stalled"]:
        state["stalled_for"] = round(stalled_for, 1)


class Executor(abc.ABC):
    """Runs one model's calls; see the module docstring for the choices."""

    spec: ModelSpec
    description: ModelDescription
    stats: ExecutorStats

    @abc.abstractmethod
    async def start(self) -> None:
        """Load and warm the model; raise a DeepaasError when it cannot."""

    def launch_early(self) -> None:
        """Start now, before any event loop, the processes :meth:`start`
        would start first (nothing, unless the model runs in processes)."""
        return None

    @abc.abstractmethod
    async def predict(self, raw: RawArguments, accept: str | None) -> PredictOutcome:
        """Validate the arguments, call ``predict`` and return the answer."""

    async def predict_interruptible(
        self, raw: RawArguments, accept: str | None
    ) -> PredictOutcome:
        """:meth:`predict` for a caller that may cancel it (a prediction job)
        and wants the model's work to stop then.  Worker processes can be
        stopped; a call in the API process (a thread) cannot, and runs to
        its end like an abandoned one."""
        return await self.predict(raw, accept)

    @abc.abstractmethod
    async def validate_train(self, raw: RawArguments) -> dict[str, Any]:
        """Validate training arguments; answer them as JSON-able values."""

    @abc.abstractmethod
    async def stop(self, timeout: float = 10.0) -> None:
        """Release the model (and its processes)."""

    @abc.abstractmethod
    def status(self) -> dict[str, Any]:
        """Worker counts for ``/ready``: ``{"workers": n, "ready": k, ...}``."""

    @property
    def ready(self) -> bool:
        state = self.status()
        return (
            state["ready"] > 0
            and state["ready"] == state["workers"]
            and not state.get("stalled")
        )


def jsonable_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Arguments as recorded: uploads by name/type/original filename."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if isinstance(value, UploadedFile):
            out[key] = value.to_json()
        else:
            out[key] = json.loads(to_json_bytes(value))
    return out
