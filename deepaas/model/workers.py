"""ProcessPool: spawned worker processes that run one model's calls.

Design (see docs/architecture.md):

* Each worker is a ``spawn`` process (safe for CUDA and TensorFlow) with its
  own environment, e.g. ``CUDA_VISIBLE_DEVICES`` chosen by
  :mod:`deepaas.model.devices`.  It imports and warms the model once.
* The API process talks to each worker over a duplex pipe watched by the
  event loop (``add_reader``): no helper thread per call, no result polling.
* A call goes to an idle worker; when none is idle it waits in a bounded
  queue (``max_queue``), beyond which :class:`QueueFull` (503) answers.
* A worker that dies (segfault, ``os._exit``, killed for memory) closes its
  pipe: its in-flight call fails at once with :class:`WorkerCrashed`, and the
  worker is restarted and re-warmed with exponential backoff while the
  others keep answering.  A call that exceeds ``call_timeout`` answers
  :class:`CallTimeout` and its worker is killed and restarted.
* Models that offer ``predict_batch`` get concurrent requests grouped into
  batches (up to ``max_batch_size``, waiting at most ``batch_timeout``).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

from deepaas.exceptions import (
    CallTimeout,
    DeepaasError,
    ModelLoadError,
    QueueFull,
    WorkerCrashed,
)
from deepaas.model._wire import error_from_wire, is_wire_error
from deepaas.model._worker_main import run_worker
from deepaas.model.execution import Executor
from deepaas.model.loading import ModelSpec
from deepaas.model.wrapper import PredictOutcome, RawArguments

LOG = logging.getLogger(__name__)

MAX_BACKOFF = 30.0


def describe_exit(exitcode: int | None) -> str:
    """Say how a process ended, in words a user understands."""
    if exitcode is None:
        return "it stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (often: killed for using too much memory)" if name == "SIGKILL" else ""
        return f"it was killed by {name}{hint}"
    return f"it exited with code {exitcode}"


class _Worker:
    """The API process's view of one worker process."""

    def __init__(self, index: int, env: dict[str, str]) -> None:
        self.index = index
        self.env = env
        self.process: Any = None
        self.conn: Any = None
        self.state = "stopped"  # starting | idle | busy | dead | stopped
        self.call: asyncio.Future[Any] | None = None
        self.ready: asyncio.Future[Any] | None = None
        self.failures = 0
        self.ready_since = 0.0
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


class ProcessPool(Executor):
    """Runs a model in ``size`` spawned processes (``--workers N``)."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        size: int = 1,
        warm: bool = True,
        worker_envs: Sequence[dict[str, str]] | None = None,
        max_queue: int = 0,
        call_timeout: float = 0,
        log_level: int = logging.INFO,
        start_timeout: float = 600.0,
    ) -> None:
        if size < 1:
            raise ValueError(f"--workers must be >= 1 for a process pool (got {size})")
        envs = list(worker_envs or [{} for _ in range(size)])
        if len(envs) != size:
            raise ValueError(f"worker_envs needs {size} entries (got {len(envs)})")
        self.spec = spec
        self._warm = warm
        self._max_queue = max_queue or 64 * size
        self._call_timeout = call_timeout
        self._log_level = log_level
        self._start_timeout = start_timeout
        self._workers = [_Worker(i, env) for i, env in enumerate(envs)]
        self._idle: collections.deque[_Worker] = collections.deque()
        self._waiters: collections.deque[asyncio.Future[_Worker]] = collections.deque()
        self._call_ids = itertools.count(1)
        self._context = multiprocessing.get_context("spawn")
        self._stopping = False
        self._restart_tasks: set[asyncio.Task[None]] = set()
        self._batcher: _Batcher | None = None

    # -- life cycle ---------------------------------------------------------

    async def start(self) -> None:
        await asyncio.gather(*(self._spawn(w) for w in self._workers))
        try:
            await asyncio.gather(*(self._await_ready(w) for w in self._workers))
        except BaseException:
            await self.stop(timeout=2)
            raise
        if self.description.batching:
            self._batcher = _Batcher(self, **self.description.batching)

    async def _spawn(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=run_worker,
            args=(child_conn, self.spec, self._warm, worker.env, self._log_level),
            name=f"deepaas-worker-{self.spec.name}-{worker.index}",
            daemon=True,
        )
        worker.state = "starting"
        worker.ready = loop.create_future()
        await loop.run_in_executor(None, process.start)
        child_conn.close()
        worker.process = process
        worker.conn = parent_conn
        loop.add_reader(parent_conn.fileno(), self._on_readable, worker)
        LOG.debug("model %r: worker %d started (pid %d)", self.spec.name,
                  worker.index, process.pid)

    async def _await_ready(self, worker: _Worker) -> None:
        assert worker.ready is not None
        try:
            await asyncio.wait_for(asyncio.shield(worker.ready), self._start_timeout)
        except asyncio.TimeoutError:
            raise ModelLoadError(
                f"model {self.spec.name!r}: worker {worker.index} did not finish "
                f"loading and warming within {self._start_timeout:g} s"
            ) from None

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        for task in list(self._restart_tasks):
            task.cancel()
        if self._batcher is not None:
            self._batcher.close()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(WorkerCrashed("the server is shutting down"))
        self._waiters.clear()
        for worker in self._workers:
            if worker.conn is not None and worker.state in ("idle", "busy", "starting"):
                try:
                    worker.conn.send(("stop",))
                except OSError:
                    pass
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            process = worker.process
            if process is None:
                continue
            remaining = max(0.0, deadline - time.monotonic())
            await loop.run_in_executor(None, process.join, remaining)
            if process.is_alive():
                process.kill()
                await loop.run_in_executor(None, process.join, 5)
            self._detach(worker)
            worker.state = "stopped"

    def _detach(self, worker: _Worker) -> None:
        if worker.conn is not None:
            try:
                asyncio.get_running_loop().remove_reader(worker.conn.fileno())
            except (OSError, ValueError, RuntimeError):
                pass
            worker.conn.close()
            worker.conn = None

    # -- messages from workers ---------------------------------------------

    def _on_readable(self, worker: _Worker) -> None:
        try:
            while worker.conn is not None and worker.conn.poll():
                self._on_message(worker, worker.conn.recv())
        except (EOFError, OSError):
            self._on_death(worker)

    def _on_message(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            self.description = message[1]
            worker.state = "idle"
            worker.ready_since = time.monotonic()
            if worker.ready is not None and not worker.ready.done():
                worker.ready.set_result(None)
            LOG.info(
                "model %r: worker %d ready (pid %d)", self.spec.name, worker.index,
                message[2],
            )
            self._release(worker)
        elif kind == "failed":
            LOG.error("model %r: worker %d failed to start:\n%s", self.spec.name,
                      worker.index, message[2])
            error = ModelLoadError(f"model {self.spec.name!r}: {message[1]}")
            if worker.ready is not None and not worker.ready.done():
                worker.ready.set_exception(error)
        elif kind in ("result", "error"):
            call, worker.call = worker.call, None
            if call is not None and not call.done():
                if kind == "error":
                    call.set_exception(error_from_wire(message[2]))
                else:
                    call.set_result(message[2])
            if worker.state == "busy":
                self._release(worker)

    def _on_death(self, worker: _Worker) -> None:
        if worker.state in ("dead", "stopped"):
            return
        was_ready = worker.state in ("idle", "busy")
        worker.state = "dead"
        self._detach(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        process = worker.process
        if process is not None:
            process.join(timeout=1)
        how = describe_exit(process.exitcode if process is not None else None)
        call, worker.call = worker.call, None
        if call is not None and not call.done():
            call.set_exception(
                WorkerCrashed(
                    f"the worker process of model {self.spec.name!r} died while "
                    f"answering: {how}; it is being restarted"
                )
            )
        if worker.ready is not None and not worker.ready.done():
            worker.ready.set_exception(
                ModelLoadError(
                    f"model {self.spec.name!r}: worker {worker.index} died while "
                    f"loading: {how}"
                )
            )
        if self._stopping:
            return
        LOG.error("model %r: worker %d (pid %s) died: %s", self.spec.name,
                  worker.index, worker.pid, how)
        if was_ready and time.monotonic() - worker.ready_since > 60:
            worker.failures = 0
        worker.failures += 1
        if was_ready or worker.restarts:
            task = asyncio.get_running_loop().create_task(self._restart(worker))
            self._restart_tasks.add(task)
            task.add_done_callback(self._restart_tasks.discard)
        self._fail_waiters_if_hopeless()

    async def _restart(self, worker: _Worker) -> None:
        delay = min(MAX_BACKOFF, 0.25 * 2 ** (worker.failures - 1))
        LOG.info("model %r: restarting worker %d in %.2f s", self.spec.name,
                 worker.index, delay)
        await asyncio.sleep(delay)
        if self._stopping:
            return
        worker.restarts += 1
        await self._spawn(worker)
        try:
            await self._await_ready(worker)
        except DeepaasError as exc:
            LOG.error("model %r: worker %d restart failed: %s", self.spec.name,
                      worker.index, exc)
            if worker.state != "dead":
                self._kill(worker)

    def _kill(self, worker: _Worker) -> None:
        """Kill a stuck worker; its death is handled like any crash."""
        if worker.process is not None and worker.process.is_alive():
            worker.process.kill()

    def _fail_waiters_if_hopeless(self) -> None:
        """Never let a waiter hang when no worker is alive or coming back."""
        if any(w.state in ("idle", "busy", "starting") for w in self._workers):
            return
        if self._restart_tasks:
            return
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(
                    WorkerCrashed(f"no worker of model {self.spec.name!r} is alive")
                )
        self._waiters.clear()

    # -- dispatching calls --------------------------------------------------

    def _release(self, worker: _Worker) -> None:
        worker.state = "idle"
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                worker.state = "busy"
                waiter.set_result(worker)
                return
        self._idle.append(worker)

    async def _acquire(self) -> _Worker:
        if self._idle:
            worker = self._idle.popleft()
            worker.state = "busy"
            return worker
        if self._stopping:
            raise WorkerCrashed("the server is shutting down")
        if len(self._waiters) >= self._max_queue:
            raise QueueFull(
                f"model {self.spec.name!r}: {len(self._waiters)} requests are already "
                "waiting for a worker; retry later"
            )
        waiter: asyncio.Future[_Worker] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._fail_waiters_if_hopeless()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result())
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    async def call(self, kind: str, *payload: Any) -> Any:
        """Send one call to an idle worker and wait for its answer."""
        worker = await self._acquire()
        loop = asyncio.get_running_loop()
        call: asyncio.Future[Any] = loop.create_future()
        worker.call = call
        try:
            worker.conn.send((kind, next(self._call_ids), *payload))
        except (OSError, AttributeError):
            self._on_death(worker)
        try:
            if self._call_timeout:
                return await asyncio.wait_for(asyncio.shield(call), self._call_timeout)
            return await call
        except asyncio.TimeoutError:
            LOG.error(
                "model %r: worker %d exceeded --predict-timeout (%g s); restarting it",
                self.spec.name, worker.index, self._call_timeout,
            )
            worker.call = None
            self._kill(worker)
            raise CallTimeout(
                f"model {self.spec.name!r} did not answer within "
                f"{self._call_timeout:g} s (--predict-timeout); its worker is being "
                "restarted"
            ) from None

    async def predict(self, raw: RawArguments, accept: str | None) -> PredictOutcome:
        if self._batcher is not None:
            return await self._batcher.submit(raw, accept)
        return await self.call("predict", raw, accept)

    async def validate_train(self, raw: RawArguments) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("validate_train", raw)
        return result

    def status(self) -> dict[str, Any]:
        states = [w.state for w in self._workers]
        return {
            "mode": "processes",
            "workers": len(self._workers),
            "ready": sum(s in ("idle", "busy") for s in states),
            "busy": states.count("busy"),
            "queued": len(self._waiters),
            "restarts": sum(w.restarts for w in self._workers),
            "pids": [w.pid for w in self._workers],
        }

    def worker_pids(self) -> list[int | None]:
        """Process ids of the workers (for tests and diagnostics)."""
        return [w.pid for w in self._workers]


class _Batcher:
    """Groups concurrent predictions into ``predict_batch`` calls."""

    def __init__(
        self, pool: ProcessPool, *, max_batch_size: int, batch_timeout: float
    ) -> None:
        self._pool = pool
        self._max = max(1, max_batch_size)
        self._timeout = max(0.0, batch_timeout)
        self._queue: asyncio.Queue[
            tuple[RawArguments, str | None, asyncio.Future[PredictOutcome]]
        ] = asyncio.Queue()
        self._tasks = [
            asyncio.get_running_loop().create_task(self._dispatch())
            for _ in range(len(pool._workers))
        ]

    async def submit(self, raw: RawArguments, accept: str | None) -> PredictOutcome:
        if self._queue.qsize() >= self._pool._max_queue:
            raise QueueFull(
                f"model {self._pool.spec.name!r}: {self._queue.qsize()} requests are "
                "waiting for a batch; retry later"
            )
        future: asyncio.Future[PredictOutcome] = (
            asyncio.get_running_loop().create_future()
        )
        await self._queue.put((raw, accept, future))
        return await future

    async def _dispatch(self) -> None:
        while True:
            batch = [await self._queue.get()]
            deadline = time.monotonic() + self._timeout
            while len(batch) < self._max:
                remaining = deadline - time.monotonic()
                try:
                    if remaining <= 0:
                        batch.append(self._queue.get_nowait())
                    else:
                        batch.append(
                            await asyncio.wait_for(self._queue.get(), remaining)
                        )
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
            live = [item for item in batch if not item[2].done()]
            if not live:
                continue
            try:
                results = await self._pool.call(
                    "predict_batch", [(raw, accept) for raw, accept, _ in live]
                )
            except DeepaasError as exc:
                for _, _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), result in zip(live, results, strict=True):
                if future.done():
                    continue
                if is_wire_error(result):
                    future.set_exception(error_from_wire(result))
                else:
                    future.set_result(result)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        while not self._queue.empty():
            _, _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(WorkerCrashed("the server is shutting down"))


def default_worker_count() -> int:
    """A sensible worker count for CPU-bound models on this machine."""
    return max(1, (os.cpu_count() or 1))
