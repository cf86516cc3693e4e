"""The in-process executor: the model runs in the API process.

Used with ``--workers 0``, or for a model declaring ``deepaas_execution =
"thread"`` or ``"async"``: synchronous calls run in a thread pool, coroutine
models (and ``"async"`` ones) on the event loop.  No process hop, no
pickling: the fastest path for light or thread-safe models.

A call whose GPU failed (:class:`~deepaas.exceptions.GpuContextLost`)
leaves the API process itself unable to use its GPU, and nothing can
replace it from inside: the call is answered clearly, the log says that the
process must be restarted, and ``/ready`` turns 503 for the model (its
``ready`` count drops to 0), so that a load balancer or an orchestrator
stops sending it calls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import time
from typing import Any

from deepaas.engine.batching import Batcher, run_batch
from deepaas.engine.executor import (
    Executor,
    ExecutorStats,
    checked_stall_timeout,
    jsonable_arguments,
    stall,
)
from deepaas.engine.settings import DEFAULT_STALL_TIMEOUT
from deepaas.exceptions import (
    CallTimeout,
    DeepaasError,
    GpuContextLost,
    GpuOutOfMemory,
    QueueFull,
)
from deepaas.model.gpu_faults import PROCESS_MUST_RESTART, gpu_fault, restated
from deepaas.model.gpu_memory import recover_from_out_of_memory
from deepaas.model.loading import ModelSpec
from deepaas.model.wrapper import (
    ModelWrapper,
    PredictOutcome,
    RawArguments,
    load_wrapped,
)

#: Names of the threads that run an in-process model's calls start so.
MODEL_THREAD_PREFIX = "deepaas-model-"

#: The engine's log, where the pools say what happens to their workers.
LOG = logging.getLogger("deepaas.engine.workers")


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
        #: The fault after which this process cannot use its GPU (None: none).
        self._lost_gpu: str | None = None
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
        try:
            return await self._predict_recovering(raw, accept)
        except GpuContextLost as exc:
            error = self._gpu_failed(exc)
        raise error

    def _gpu_failed(self, exc: GpuContextLost) -> GpuContextLost:
        """The answer to a call whose GPU failed, said for this process (which
        nothing replaces); the first one is logged, and turns /ready 503."""
        message = restated(exc.message, PROCESS_MUST_RESTART)
        if self._lost_gpu is None:
            self._lost_gpu = gpu_fault(exc.message) or "CUDA fault"
            LOG.error(
                "model %r: the GPU failed in predict (%s); this process cannot "
                "use it any more and must be restarted",
                self.spec.name,
                self._lost_gpu,
            )
        # A copy without the model's own exception and its frames.
        return GpuContextLost(message, traceback=exc.traceback)

    async def _predict_recovering(
        self, raw: RawArguments, accept: str | None
    ) -> PredictOutcome:
        """Predict; after running out of GPU memory, release what is cached."""
        if self._batcher is not None:
            try:
                return await self._run(self._batcher.submit, raw, accept)
            except GpuOutOfMemory:
                self.stats.out_of_memory += 1  # released by _predict_batch
                raise
        try:
            if self._inline:
                # No await between here and the answer: nothing to bound or
                # queue.  (_inline is set once the wrapper is.)
                return self._wrapper.run_predict(raw, accept)  # type: ignore[union-attr]
            return await self._run(self._predict, raw, accept)
        except GpuOutOfMemory as exc:
            # A copy without the model's own exception, whose traceback's
            # frames hold the tensors of the failed call.
            error = GpuOutOfMemory(exc.message, traceback=exc.traceback)
        self.stats.out_of_memory += 1
        await self._recover_gpu_memory("predict")
        raise error

    async def _recover_gpu_memory(self, method: str) -> None:
        """Release the GPU memory a failed call left cached (off the event loop:
        it runs the garbage collector)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._pool, recover_from_out_of_memory, self.spec.name, method
        )

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
        outcomes = await loop.run_in_executor(
            self._pool, run_batch, self.wrapper, requests
        )
        if any(isinstance(outcome, GpuOutOfMemory) for outcome in outcomes):
            await self._recover_gpu_memory("predict_batch")
        return outcomes

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
        started = 1 if self._wrapper is not None else 0
        ready = 0 if self._lost_gpu else started
        state: dict[str, Any] = {
            "mode": f"in-process ({self.mode})",
            "workers": 1,
            "ready": ready,
            "warming": 1 - started,
            "busy": self._in_flight,
            "queued": max(0, self._in_flight - self._threads),
            "restarts": 0,
        }
        stall(state, self.stalled_for(), self.stall_timeout)
        if self._lost_gpu:
            state["last_error"] = (
                f"the GPU failed ({self._lost_gpu}); {PROCESS_MUST_RESTART}"
            )
        return state
