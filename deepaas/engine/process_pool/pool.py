"""ProcessPool: spawned worker processes that run one model's calls.

Design (docs/engine.md tells the whole story):

* Each worker is a ``spawn`` process (safe for CUDA and TensorFlow) with its
  own environment, e.g. ``CUDA_VISIBLE_DEVICES`` chosen by
  :mod:`deepaas.engine.devices`.  It imports and warms the model once.
* The API process talks to each worker over a Unix socket pair read by an
  asyncio protocol: no helper thread per call, no polling, several answers
  per wake-up under load.
* A call goes to an idle worker, or, when a worker's calls are short
  (``PIPELINE_CALL_SECONDS``), waits in that worker's socket behind at most
  ``PIPELINE_DEPTH - 1`` others, which spares the worker a round trip
  through the event loop per call.  Otherwise it waits in a bounded queue
  (``max_queue``), beyond which :class:`QueueFull` (503) answers.
* A worker that dies (segfault, ``os._exit``, killed for memory) closes its
  socket: the call it was running fails with :class:`WorkerCrashed` naming
  the cause, the calls waiting in its socket go back to the front of the
  queue, and the worker is restarted and re-warmed with exponential backoff
  while the others keep answering.  A call that exceeds ``call_timeout``
  answers :class:`CallTimeout` and its worker is killed and restarted.
* A worker that answers :class:`~deepaas.exceptions.GpuContextLost` (its
  CUDA context is broken: every later call would fail) exits once it has
  answered; the pool, which read the same answer, takes no more calls to
  it, hands the calls waiting in its socket to the others, and restarts it
  (cause ``gpu_failed``).
* Models that offer ``predict_batch`` get a :class:`~deepaas.engine.batching.
  Batcher` in front of the pool.
* A caller that goes away (its client disconnected) leaves the queue at
  once; a call already in a worker runs to its end (still bounded by
  ``call_timeout``) and its answer is dropped.
* Training arguments are validated on each worker's second socket, by a
  thread of its own, so that validation never waits behind predictions.
* ``status()`` says ``stalled`` when no worker has been free to take a call
  for ``stall_timeout`` seconds (a hung model), which makes ``/ready`` 503.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from typing import Any

from deepaas.engine.batching import Batcher
from deepaas.engine.devices import place_model, read_need
from deepaas.engine.executor import (
    Executor,
    ExecutorStats,
    checked_stall_timeout,
    stall,
)
from deepaas.engine.process_pool._dispatch import (
    Dispatcher,
)
from deepaas.engine.process_pool._worker_handle import SentCall, WorkerHandle
from deepaas.engine.process_pool._worker_main import lost_gpu_message
from deepaas.engine.processes import (
    FAILED,
    READY,
    describe_exit,
    spawn_context,
    start_failure,
)
from deepaas.engine.processes.wire import error_from_wire
from deepaas.engine.settings import DEFAULT_STALL_TIMEOUT
from deepaas.exceptions import (
    CallTimeout,
    DeepaasError,
    GpuOutOfMemory,
    ModelLoadError,
    WorkerCrashed,
)
from deepaas.model.gpu_faults import gpu_fault
from deepaas.model.loading import ModelSpec
from deepaas.model.wrapper import PredictOutcome, RawArguments

#: The pool's log keeps the name it has always had (log configurations and
#: filters name it).
LOG = logging.getLogger("deepaas.engine.workers")

#: Seconds a worker whose GPU failed gets to exit on its own after its
#: answer, before it is killed (it exits at once unless something hangs).
LOST_GPU_GRACE = 10.0


class RunsInProcess(Exception):
    """The model, described by its first worker, runs in the API process
    (``deepaas_execution`` = ``mode``): the pool must give way."""

    def __init__(self, mode: str) -> None:
        super().__init__(mode)
        self.mode = mode


class _Resend(Exception):
    """A call sent to a worker that died before it started it: send it again."""


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
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        describe_first: bool = False,
    ) -> None:
        """``describe_first``: no probe described the model before (a
        machine without GPUs): the first worker imports it, says what it
        declares, and the workers are placed from that, on the CPU; a model
        that runs in the API process ends start() with :class:`RunsInProcess`.
        """
        if size < 1:
            raise ValueError(f"--workers must be >= 1 for a process pool (got {size})")
        envs = list(worker_envs or [{} for _ in range(size)])
        if len(envs) != size:
            raise ValueError(f"worker_envs needs {size} entries (got {len(envs)})")
        if call_timeout < 0:
            raise ValueError(f"--predict-timeout must be >= 0 (got {call_timeout})")
        self.spec = spec
        self.stall_timeout = checked_stall_timeout(stall_timeout)
        self._warm = warm
        self._max_queue = max_queue or 64 * size
        self._call_timeout = call_timeout
        self._log_level = log_level
        self._start_timeout = start_timeout
        self._describe_first = describe_first
        self._workers = [WorkerHandle(i, env) for i, env in enumerate(envs)]
        self._call_ids = itertools.count(1)
        self._context = spawn_context()
        self._tasks: set[asyncio.Task[None]] = set()
        self._batcher: Batcher | None = None
        self._last_error = ""
        self.stats = ExecutorStats()
        self._dispatch = Dispatcher(
            self._workers,
            model=spec.name,
            max_queue=self._max_queue,
            stats=self.stats,
            restarting=lambda: any(not task.done() for task in self._tasks),
        )

    # -- life cycle ---------------------------------------------------------

    @property
    def _stopping(self) -> bool:
        return self._dispatch.stopping

    async def start(self) -> None:
        self._dispatch.stopping = False
        try:
            placed = 0
            if self._describe_first:
                await self._place_from_first_worker()
                placed = 1
            for worker in self._workers[placed:]:
                await self._spawn(worker)
            outcomes = await asyncio.gather(
                *(self._await_ready(w) for w in self._workers), return_exceptions=True
            )
        except BaseException:
            await self.stop(timeout=2)
            raise
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:
            await self.stop(timeout=2)
            raise errors[0]
        self._batcher = Batcher.for_model(
            self.description,
            self._call_batch,
            concurrency=len(self._workers),
            max_queue=self._max_queue,
            sizes=self.stats.batch_sizes,
        )

    def launch_early(self) -> None:
        """Start the processes that :meth:`start` starts first, right now,
        without an event loop: the first worker when it describes the
        model, else every worker.

        ``deepaas-run`` calls it before it imports its HTTP stack, so that
        the workers import the model meanwhile, on another core.
        """
        first = self._workers[:1] if self._describe_first else self._workers
        for worker in first:
            worker.launch(
                self._context,
                self.spec,
                warm=self._warm,
                log_level=self._log_level,
                describe_first=self._describe_first,
            )

    async def _place_from_first_worker(self) -> None:
        """Import the model once, in the first worker, and place every
        worker from what it declares (docs/gpus.md: no GPU, so the CPU)."""
        first = self._workers[0]
        await self._spawn(first, describe_first=True)
        facts = await first.await_facts(self.spec, self._start_timeout)
        if facts["execution"] != "process":
            raise RunsInProcess(facts["execution"])
        need = read_need(self.spec.name, facts["resources"])
        placement = place_model(self.spec.name, need, [], workers=len(self._workers))
        if placement.warning:
            LOG.warning("%s", placement.warning)
        for worker, env in zip(self._workers, placement.worker_envs, strict=True):
            worker.env = dict(env)  # restarts get it from the start
        if first.channel is None or not first.channel.send(("go", first.env)):
            await self._await_ready(first)  # raises why it died
            raise ModelLoadError(f"model {self.spec.name!r}: worker 0 went away")

    async def _spawn(
        self, worker: WorkerHandle, *, describe_first: bool = False
    ) -> None:
        await worker.spawn(
            self._context,
            self.spec,
            warm=self._warm,
            log_level=self._log_level,
            on_message=self._on_message,
            on_closed=self._on_closed,
            describe_first=describe_first,
        )
        process = worker.process
        LOG.debug(
            "model %r: worker %d started (pid %d)",
            self.spec.name,
            worker.index,
            process.pid,
        )

    async def _await_ready(self, worker: WorkerHandle) -> None:
        await worker.await_ready(self.spec, self._start_timeout)

    async def stop(self, timeout: float = 10.0) -> None:
        self._dispatch.stopping = True
        for task in list(self._tasks):
            task.cancel()
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
        shutting_down = WorkerCrashed("the server is shutting down")
        self._dispatch.fail_waiters(shutting_down)
        for worker in self._workers:
            if worker.state == "starting":
                worker.kill()  # no point finishing a warm-up
            elif worker.channel is not None:
                worker.channel.send(("stop",))
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            await worker.join(deadline, shutting_down)
        self._dispatch.idle.clear()

    # -- messages from workers ---------------------------------------------

    def _on_message(self, worker: WorkerHandle, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind in ("result", "error"):
            self._answered(worker, message)
        elif kind == READY:
            self.description = message[1]
            worker.ready_since = time.monotonic()
            LOG.info(
                "model %r: worker %d ready (pid %d)",
                self.spec.name,
                worker.index,
                message[2],
            )
            if worker.ready is not None and not worker.ready.done():
                worker.ready.set_result(None)
            worker.state = "idle"
            self._dispatch.offer(worker)
        elif kind == "facts":
            if worker.facts is not None and not worker.facts.done():
                worker.facts.set_result(message[1])
        elif kind == FAILED:
            error, trace = start_failure(message)
            # Failing to import is reported in one line, as the start-up
            # probe reports it (the traceback only at DEBUG level); failing
            # to warm with the traceback.
            describing = worker.facts is not None and not worker.facts.done()
            LOG.log(
                logging.DEBUG if describing else logging.ERROR,
                "model %r: worker %d failed to start: %s\n%s",
                self.spec.name,
                worker.index,
                error.message,
                trace,
            )
            self._last_error = error.message
            if worker.ready is not None and not worker.ready.done():
                worker.ready.set_exception(error)

    def _answered(self, worker: WorkerHandle, message: tuple[Any, ...]) -> None:
        """The worker answered its oldest call: it runs the next one now."""
        if not worker.sent:
            return  # timed out meanwhile: the worker is being killed
        sent = worker.sent.popleft()
        if sent.interruptible:
            worker.exclusive = False
        now = time.monotonic()
        worker.count_duration(now - worker.running_since)
        if sent.timer is not None:
            sent.timer.cancel()
        if not sent.answer.done():  # done: abandoned by its caller
            if message[0] == "error":
                sent.answer.set_exception(error_from_wire(message[2]))
            else:
                sent.answer.set_result(message[2])
        lost = lost_gpu_message(message)
        if lost is not None:
            self._retire(worker, gpu_fault(lost) or "CUDA fault")
            return
        if worker.sent:
            self._start_running(worker, worker.sent[0], now)
        if worker.state == "busy":
            self._dispatch.release(worker)

    def _retire(self, worker: WorkerHandle, fault: str) -> None:
        """``worker`` answered that its GPU failed, and exits: it takes no more
        calls, and the ones waiting in its socket go to the others once it
        has closed it (:meth:`_on_closed`)."""
        worker.lost_gpu = fault
        worker.state = "retiring"
        process = worker.process

        def kill_if_lingering() -> None:
            if worker.process is process and worker.state == "retiring":
                LOG.warning(
                    "model %r: worker %d (pid %s) did not exit after its GPU "
                    "failed; killing it",
                    self.spec.name,
                    worker.index,
                    process.pid,
                )
                worker.kill()

        asyncio.get_running_loop().call_later(LOST_GPU_GRACE, kill_if_lingering)

    def _on_closed(self, worker: WorkerHandle, process: Any) -> None:
        """The worker's socket reached end of file: it died or is dying."""
        if worker.process is not process or worker.state in ("dead", "stopped"):
            return
        was_ready = worker.state in ("idle", "busy", "retiring")
        worker.state = "dead"
        worker.close_sockets()
        if worker in self._dispatch.idle:
            self._dispatch.idle.remove(worker)
        # Calls waiting in its socket never started: they go to the front of
        # the queue, for another worker or this one once restarted.  The one
        # it was running (none after a timeout, nor once it said its GPU
        # failed: it read no more calls) fails in _after_death.
        stopped = worker.timed_out or worker.interrupted or worker.lost_gpu
        running = 0 if stopped else 1
        while len(worker.sent) > running:
            waiting = worker.sent.pop()
            if not waiting.answer.done():
                waiting.answer.set_exception(_Resend())
        if self._stopping:
            return
        task = asyncio.get_running_loop().create_task(
            self._after_death(worker, process, was_ready)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _after_death(
        self, worker: WorkerHandle, process: Any, was_ready: bool
    ) -> None:
        # The exit status tells the user why; it is there within
        # milliseconds of the socket closing.
        for _ in range(100):
            if process.exitcode is not None:
                break
            await asyncio.sleep(0.01)
        if process.exitcode is None:
            process.kill()
        how = describe_exit(process.exitcode)
        if worker.timed_out:
            how = f"it exceeded --predict-timeout ({self._call_timeout:g} s)"
        elif worker.interrupted:
            how = "it was stopped: the call it ran was cancelled"
        elif worker.lost_gpu:
            how = f"its GPU failed ({worker.lost_gpu}) and it exited to be replaced"
        self._last_error = f"worker {worker.index} (pid {process.pid}) died: {how}"
        worker.fail_sent(
            WorkerCrashed(
                f"the worker process of model {self.spec.name!r} died while "
                f"answering: {how}; it is being restarted"
            )
        )
        if worker.ready is not None and not worker.ready.done():
            # Whoever is starting this worker (start() or _restart) handles it.
            worker.ready.set_exception(
                ModelLoadError(
                    f"model {self.spec.name!r}: worker {worker.index} died while "
                    f"loading: {how}"
                )
            )
        if self._stopping or not was_ready:
            return
        if worker.interrupted:  # on purpose: no failure, no backoff
            LOG.info(
                "model %r: worker %d (pid %s) stopped: the call it ran was "
                "cancelled; restarting it",
                self.spec.name,
                worker.index,
                process.pid,
            )
            self.stats.restarts["cancelled"] += 1
            await self._restart(worker)
            return
        if worker.lost_gpu:
            # The worker logged the error; a GPU that keeps failing backs
            # off like a worker that keeps crashing.
            LOG.warning(
                "model %r: worker %d (pid %s) exited: its GPU failed (%s); "
                "restarting it",
                self.spec.name,
                worker.index,
                process.pid,
                worker.lost_gpu,
            )
            self.stats.restarts["gpu_failed"] += 1
            worker.count_failure(while_serving=True)
            await self._restart(worker)
            return
        LOG.error(
            "model %r: worker %d (pid %s) died: %s",
            self.spec.name,
            worker.index,
            process.pid,
            how,
        )
        if worker.timed_out:
            cause = "timeout"
        elif process.exitcode is not None and process.exitcode < 0:
            cause = "signal"
        else:
            cause = "exit"
        self.stats.restarts[cause] += 1
        worker.count_failure(while_serving=True)
        await self._restart(worker)

    async def _restart(self, worker: WorkerHandle) -> None:
        """Re-spawn and re-warm a worker, backing off while it keeps failing."""
        while not self._stopping:
            delay = worker.backoff()
            LOG.info(
                "model %r: restarting worker %d in %.2f s",
                self.spec.name,
                worker.index,
                delay,
            )
            await asyncio.sleep(delay)
            if self._stopping:
                return
            worker.restarts += 1
            try:
                await self._spawn(worker)
                await self._await_ready(worker)
                return
            except (DeepaasError, OSError) as exc:
                message = getattr(exc, "message", str(exc))
                LOG.error(
                    "model %r: worker %d restart failed: %s",
                    self.spec.name,
                    worker.index,
                    message,
                )
                self._last_error = message
                self.stats.restarts["start_failed"] += 1
                if worker.state == "starting":
                    worker.state = "dead"
                    worker.close_sockets()
                    worker.kill()
                worker.count_failure(while_serving=False)
                if not any(w.state in ("idle", "busy") for w in self._workers):
                    self._dispatch.fail_waiters(
                        WorkerCrashed(
                            f"no worker of model {self.spec.name!r} is running "
                            f"({message}); retrying"
                        )
                    )

    async def call(self, kind: str, *payload: Any, interruptible: bool = False) -> Any:
        """Send one call to a worker and wait for its answer.

        ``interruptible``: the caller may stop the call (a prediction job
        cancelled): it waits for a free worker rather than in a worker's
        socket, and cancelling it while it runs kills its worker, which is
        restarted, instead of letting it run to its end.
        """
        again = False
        while True:
            worker = await self._dispatch.acquire(again=again, alone=interruptible)
            try:
                return await self._send(worker, kind, payload, interruptible)
            except _Resend:
                again = True  # its worker died before starting it

    async def _send(
        self,
        worker: WorkerHandle,
        kind: str,
        payload: tuple[Any, ...],
        interruptible: bool = False,
    ) -> Any:
        call_id = next(self._call_ids)
        channel = worker.channel
        try:
            sent = channel is not None and channel.send((kind, call_id, *payload))
        except BaseException:
            # Not sent (e.g. a value that cannot be pickled): the worker never
            # saw the call and is free for the next one.
            self._dispatch.release(worker)
            raise
        if not sent:
            raise WorkerCrashed(
                f"the worker process of model {self.spec.name!r} is gone; "
                "it is being restarted"
            )
        call = SentCall(
            call_id, asyncio.get_running_loop().create_future(), None, interruptible
        )
        worker.exclusive = worker.exclusive or interruptible
        worker.sent.append(call)
        if len(worker.sent) == 1:
            self._start_running(worker, call, time.monotonic())
        try:
            return await call.answer
        except asyncio.CancelledError:
            # Abandoned once sent: the call runs to its end and its answer is
            # dropped (_answered), but --predict-timeout still bounds it;
            # an interruptible one is stopped with its worker.
            self.stats.abandoned += 1
            if interruptible and call in worker.sent and not worker.timed_out:
                LOG.info(
                    "model %r: stopping worker %d: the call it runs was cancelled",
                    self.spec.name,
                    worker.index,
                )
                worker.interrupted = True
                worker.kill()
            raise

    def _start_running(self, worker: WorkerHandle, call: SentCall, now: float) -> None:
        """``call`` is the one ``worker`` runs from ``now``: time it."""
        worker.running_since = worker.busy_since = now
        if self._call_timeout:
            call.timer = asyncio.get_running_loop().call_later(
                self._call_timeout, self._on_timeout, worker, call
            )

    def _on_timeout(self, worker: WorkerHandle, call: SentCall) -> None:
        if not worker.sent or worker.sent[0] is not call:
            return  # answered in time
        LOG.error(
            "model %r: worker %d exceeded --predict-timeout (%g s); restarting it",
            self.spec.name,
            worker.index,
            self._call_timeout,
        )
        worker.sent.popleft()
        worker.timed_out = True
        self.stats.timeouts += 1
        if not call.answer.done():  # done: abandoned by its caller
            call.answer.set_exception(
                CallTimeout(
                    f"model {self.spec.name!r} did not answer within "
                    f"{self._call_timeout:g} s (--predict-timeout); its worker is "
                    "being restarted"
                )
            )
        worker.kill()

    async def _call_batch(self, requests: list[Any]) -> list[Any]:
        result: list[Any] = await self.call("predict_batch", requests)
        return result

    async def predict_interruptible(
        self, raw: RawArguments, accept: str | None
    ) -> PredictOutcome:
        """``predict`` for a caller that may stop it: see :meth:`call`
        (``interruptible``).  No batching: it is one call on its own."""
        body, media_type = await self.call(
            "predict", raw.pairs, raw.json_body, accept, interruptible=True
        )
        return PredictOutcome(body, media_type)

    async def predict(self, raw: RawArguments, accept: str | None) -> PredictOutcome:
        try:
            if self._batcher is not None:
                return await self._batcher.submit(raw, accept)
            # Plain tuples both ways: pickling a dataclass costs four times more.
            body, media_type = await self.call(
                "predict", raw.pairs, raw.json_body, accept
            )
        except GpuOutOfMemory:
            self.stats.out_of_memory += 1  # the worker released its cache
            raise
        return PredictOutcome(body, media_type)

    async def validate_train(self, raw: RawArguments) -> dict[str, Any]:
        """Validate training arguments without waiting behind predictions.

        A ready worker answers on its second socket, from a thread of its
        own, even while it runs a prediction.  With no worker ready the call
        queues like any other, and so waits for one to come back.
        """
        worker = next(
            (
                w
                for w in self._workers
                if w.state in ("idle", "busy") and w.control is not None
            ),
            None,
        )
        if worker is None or worker.control is None:
            result: dict[str, Any] = await self.call("validate_train", raw)
            return result
        try:
            return await worker.validate_train(
                next(self._call_ids), raw, spec=self.spec, timeout=self._call_timeout
            )
        except CallTimeout:
            self.stats.timeouts += 1
            raise

    def stalled_for(self) -> float:
        """Seconds since a worker last took a call while none is free; else 0.

        Every ready worker busy for long, and none free, is what a hung
        model looks like from outside: ``/ready`` answers 503 once this
        passes ``stall_timeout``.
        """
        if self._dispatch.idle:
            return 0.0
        busy = [w.busy_since for w in self._workers if w.state == "busy"]
        if not busy:
            return 0.0
        return max(0.0, time.monotonic() - max(busy))

    def status(self) -> dict[str, Any]:
        states = [w.state for w in self._workers]
        queued = len(self._dispatch.waiters) + sum(
            max(0, len(w.sent) - 1) for w in self._workers
        )
        if self._batcher is not None:
            queued += self._batcher.queued
        state: dict[str, Any] = {
            "mode": "processes",
            "workers": len(self._workers),
            "ready": sum(s in ("idle", "busy") for s in states),
            "warming": states.count("starting"),
            "busy": states.count("busy"),
            "queued": queued,
            "restarts": sum(w.restarts for w in self._workers),
        }
        stall(state, self.stalled_for(), self.stall_timeout)
        if self._last_error:
            state["last_error"] = self._last_error
        return state

    def worker_pids(self) -> list[int | None]:
        """Process ids of the workers (for tests and diagnostics)."""
        return [w.pid for w in self._workers]
