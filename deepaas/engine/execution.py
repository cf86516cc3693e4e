"""Where model calls run: the Executor interface and the in-process executor.

The HTTP layer talks to one :class:`Executor` per served model and never to
the model itself.  Two implementations exist:

* :class:`InProcessExecutor` (``--workers 0``, or a model declaring
  ``deepaas_execution = "thread"`` or ``"async"``): the model lives in the
  API process; synchronous calls run in a thread pool, coroutine models (and
  ``"async"`` ones) run on the event loop.  No process hop, no pickling: the
  fastest path for light or thread-safe models.
* :class:`deepaas.engine.workers.ProcessPool` (``--workers N``): N spawned
  processes, each importing and warming the model once; the API process
  stays small and a crashing model cannot take the server down.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import concurrent.futures
import dataclasses
import functools
import inspect
import json
import time
from typing import Any

from deepaas.engine.batching import Batcher, run_batch
from deepaas.engine.settings import DEFAULT_STALL_TIMEOUT
from deepaas.exceptions import CallTimeout, DeepaasError, QueueFull
from deepaas.model.description import ModelDescription
from deepaas.model.files import UploadedFile
from deepaas.model.loading import ModelSpec
from deepaas.model.wrapper import (
    ModelWrapper,
    PredictOutcome,
    RawArguments,
    load_wrapped,
    to_json_bytes,
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
    #: ``start_failed`` (a restart whose worker did not come up).
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


#: Names of the threads that run an in-process model's calls start so.
MODEL_THREAD_PREFIX = "deepaas-model-"



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


class InProcessExecutor(Executor):
    """Runs the model inside the API process (``--workers 0``, or a model
    that declares ``deepaas_execution = "thread"`` or ``"async"``).

    ``"thread"`` (the default here) runs synchronous calls in a thread pool
    of ``threads`` threads: the model must be thread-safe.  ``"async"``
    awaits a coroutine ``predict`` on the event loop and calls a plain one
    right there, without a thread hop: for models whose calls take
    microseconds and never block.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        threads: int = 4,
        warm: bool = True,
        max_queue: int = 0,
        call_timeout: float = 0,
        model: Any = None,
        mode: str | None = None,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1 (got {threads})")
        self.stall_timeout = checked_stall_timeout(stall_timeout)
        # When a thread last took or finished a call (see stalled_for).
        self._last_progress = 0.0
        if mode not in (None, "thread", "async"):
            raise ValueError(f"mode must be 'thread' or 'async' (got {mode!r})")
        self.spec = spec
        self._threads = threads
        self._warm = warm
        self._max_queue = max_queue or 64 * threads
        self._max_in_flight = threads + self._max_queue
        self._call_timeout = call_timeout
        self._model = model
        self._mode = mode
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._in_flight = 0
        self._wrapper: ModelWrapper | None = None
        self._async_predict = False
        self._inline = False
        self._batcher: Batcher | None = None
        self.stats = ExecutorStats()

    @property
    def wrapper(self) -> ModelWrapper:
        if self._wrapper is None:
            raise RuntimeError("the executor is not started")
        return self._wrapper

    @property
    def mode(self) -> str:
        return self._mode or "thread"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self._threads, thread_name_prefix=f"{MODEL_THREAD_PREFIX}{self.spec.name}"
        )

        self._wrapper = await loop.run_in_executor(
            self._pool,
            functools.partial(
                load_wrapped, self.spec, warm=self._warm, model=self._model
            ),
        )
        self.description = self._wrapper.describe()
        model = self._wrapper.model
        if self._mode is None:
            declared = getattr(model, "deepaas_execution", None)
            self._mode = "async" if declared == "async" else "thread"
        predict = getattr(model, "predict", None)
        self._async_predict = inspect.iscoroutinefunction(predict)
        self._inline = self._mode == "async" and not self._async_predict
        self._batcher = Batcher.for_model(
            self.description,
            self._predict_batch,
            concurrency=self._threads,
            max_queue=self._max_queue,
            sizes=self.stats.batch_sizes,
        )

    async def _run(self, func: Any, *args: Any) -> Any:
        if self._in_flight >= self._max_in_flight:
            raise QueueFull(
                f"model {self.spec.name!r} has {self._in_flight} predictions in "
                "progress; retry later (--max-queue)"
            )
        if self._in_flight < self._threads:
            self._last_progress = time.monotonic()
        self._in_flight += 1
        try:
            if self._call_timeout:
                return await asyncio.wait_for(func(*args), self._call_timeout)
            return await func(*args)
        except asyncio.CancelledError:
            # Its client went away: a call not yet in a thread is dropped; one
            # running finishes in the background (a thread cannot be stopped).
            self.stats.abandoned += 1
            raise
        except asyncio.TimeoutError:
            self.stats.timeouts += 1
            # A thread cannot be stopped: the call goes on in the background,
            # the client is answered now.
            raise CallTimeout(
                f"model {self.spec.name!r} did not answer within "
                f"{self._call_timeout:g} s (--predict-timeout)"
            ) from None
        finally:
            self._in_flight -= 1
            self._last_progress = time.monotonic()

    def stalled_for(self) -> float:
        """Seconds every thread has been busy with no call finishing; else 0.

        Coroutine models do not hold a thread, so they never stall this way.
        """
        if self._in_flight < self._threads or self._async_predict:
            return 0.0
        return max(0.0, time.monotonic() - self._last_progress)

    async def predict(self, raw: RawArguments, accept: str | None) -> PredictOutcome:
        if self._batcher is not None:
            return await self._run(self._batcher.submit, raw, accept)
        if self._inline:
            # No await between here and the answer: nothing to bound or queue.
            # (_inline is set once the wrapper is.)
            return self._wrapper.run_predict(raw, accept)  # type: ignore[union-attr]
        return await self._run(self._predict, raw, accept)

    async def _predict(self, raw: RawArguments, accept: str | None) -> PredictOutcome:
        wrapper = self.wrapper
        if not self._async_predict:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._pool, wrapper.run_predict, raw, accept
            )
        kwargs = wrapper.parse_predict_args(raw, accept)
        try:
            result = await wrapper.model.predict(**kwargs)
        except DeepaasError:
            raise
        except Exception as exc:
            raise wrapper.call_error("predict", exc) from exc
        return wrapper.finish_predict(result, kwargs.get("accept", accept))

    async def _predict_batch(self, requests: list[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, run_batch, self.wrapper, requests)

    async def validate_train(self, raw: RawArguments) -> dict[str, Any]:
        return jsonable_arguments(self.wrapper.parse_train_args(raw))

    async def stop(self, timeout: float = 10.0) -> None:
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def status(self) -> dict[str, Any]:
        ready = 1 if self._wrapper is not None else 0
        state: dict[str, Any] = {
            "mode": f"in-process ({self.mode})",
            "workers": 1,
            "ready": ready,
            "warming": 1 - ready,
            "busy": self._in_flight,
            "queued": max(0, self._in_flight - self._threads),
            "restarts": 0,
        }
        stall(state, self.stalled_for(), self.stall_timeout)
        return state
