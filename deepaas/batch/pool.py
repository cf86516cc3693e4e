"""Worker processes for batch runs, fed ahead in chunks so they never wait.

The API's :class:`~deepaas.engine.process_pool.pool.ProcessPool` hands one call to an
idle worker and waits for the answer: right for requests that arrive one by
one, but a batch knows its next inputs already.  Here each worker process
(:func:`deepaas.batch._worker.serve`) gets chunks of inputs, up to
``window`` chunks ahead, so it starts the next input the moment it has
answered the last, and the pipe's round trips and the recording of results
overlap with the model's work instead of adding to it.  Chunks grow to
about :data:`CHUNK_SECONDS` of the model's time (at most
:data:`MAX_CHUNK` inputs): small models pay a few system calls per chunk
rather than per input; slow models get one input per chunk.

Every input handed out has its private copies on disk until its answer is
recorded, so what a worker holds is bounded twice (:meth:`BatchPool.room`):
at most :data:`INPUTS_AHEAD` inputs, and beyond the first two (the one in
hand and the next) only while their copies hold less than
:data:`BYTES_AHEAD` bytes.

Answers come back chunk by chunk, in the order sent.  When a worker dies,
the input it had in hand (the worker counts the inputs it starts and
finishes in shared memory) is recorded as failed, the inputs it had not
answered are handed out again, and the worker is restarted.  A worker
whose GPU failed (it answered an input with
:class:`~deepaas.exceptions.GpuContextLost`) answers its chunk up to that
input and exits: that input keeps its answer, the others go out again, and
the worker is restarted, as after a crash but blaming no input.  Workers
ignore SIGTERM and SIGINT: the batch process decides, on those signals,
whether to wait for the inputs in hand or to stop the workers.
"""

from __future__ import annotations

import collections
import logging
import signal
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from typing import Any, NamedTuple

from deepaas.batch._worker import serve
from deepaas.engine.processes import (
    FAILED,
    READY,
    describe_exit,
    spawn_child,
    spawn_context,
    start_failure,
    worker_prologue,
)
from deepaas.engine.processes.wire import error_from_wire
from deepaas.exceptions import (
    DeepaasError,
    GpuContextLost,
    ModelLoadError,
    WorkerCrashed,
)
from deepaas.model.description import ModelDescription
from deepaas.model.gpu_faults import gpu_fault
from deepaas.model.loading import ModelSpec
from deepaas.model.wrapper import PredictOutcome

LOG = logging.getLogger(__name__)

#: Messages larger than this are sent only to a worker with nothing queued,
#: so that the batch process never blocks writing to a worker that is itself
#: blocked writing a large answer back.
LARGE_MESSAGE = 32 * 1024
#: Seconds of model time a chunk of inputs aims at.
CHUNK_SECONDS = 0.02
#: The most inputs a worker holds at once: in hand, and handed ahead.
INPUTS_AHEAD = 16
#: The most inputs in one chunk: two chunks fill a worker's share.
MAX_CHUNK = INPUTS_AHEAD // 2
#: A worker holding two inputs or more gets another only while their copies
#: hold less than this many bytes.
BYTES_AHEAD = 64 * 1024 * 1024
#: Signals after which a dead worker is not blamed on its input.
_SHUTDOWN_EXITS = {-signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP}
_MAX_HANDOUTS = 3


class _Worker:
    def __init__(self, index: int, env: dict[str, str]) -> None:
        self.index = index
        self.env = env
        self.process: Any = None
        self.conn: Connection | None = None
        self.progress: Any = None
        self.state = "stopped"  # starting | ready | dead | stopped
        #: (chunk id, items, bytes of their copies) handed out and not
        #: answered yet, oldest first.
        self.pending: collections.deque[tuple[int, list[Any], int]] = (
            collections.deque()
        )
        self.restarts = 0
        self.failure: DeepaasError | None = None
        #: Inputs this process answered: with ``progress``, which one it had
        #: in hand when it died.
        self.answered = 0
        #: The fault it answered an input with, after which it exits (its
        #: GPU failed); None while it has not.
        self.lost_gpu: str | None = None

    @property
    def inputs(self) -> int:
        return sum(len(items) for _, items, _ in self.pending)

    @property
    def bytes(self) -> int:
        return sum(size for _, _, size in self.pending)


Result = tuple[Any, Any, float]  # (item, PredictOutcome | DeepaasError, seconds)


class Room(NamedTuple):
    """What the worker that gets the next chunk may still take.

    The chunk ends at ``inputs`` inputs, or once its copies reach ``bytes``
    bytes; its first ``any_size`` inputs go whatever their size, so that an
    input larger than :data:`BYTES_AHEAD` still goes (one behind the other).
    """

    inputs: int
    bytes: int
    any_size: int


class BatchPool:
    """``size`` model processes, each fed up to ``window`` chunks ahead."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        envs: list[dict[str, str]],
        warm: bool = True,
        window: int = 2,
        log_level: int = logging.INFO,
        max_restarts: int = 100,
    ) -> None:
        if not envs:
            raise ValueError("a batch pool needs at least one worker")
        self.spec = spec
        self._warm = warm
        self._window = max(1, window)
        self._log_level = log_level
        self._max_restarts = max_restarts
        self._context = spawn_context()
        self._workers = [_Worker(i, env) for i, env in enumerate(envs)]
        self._chunk_ids = 0
        self._handouts: collections.Counter[str] = collections.Counter()
        self._seconds_per_input = 0.0
        self.description: ModelDescription | None = None
        self._setup: tuple[Any, ...] | None = None
        self.requeued: collections.deque[Any] = collections.deque()
        #: Answers (and crash records) not yet handed to the caller.
        self._answers: list[Result] = []
        #: Input key -> the SHA-256s its worker computed (files, answer),
        #: until the caller takes them for the input's record.
        self.digests: dict[str, dict[str, Any]] = {}
        #: Set by the caller when the run is being stopped: a worker that dies
        #: then is not restarted and its inputs are abandoned, not failed.
        self.stopping = False

    # -- life cycle ---------------------------------------------------------

    def _spawn(self, worker: _Worker) -> None:
        parent, child = self._context.Pipe(duplex=True)
        worker.progress = self._context.RawValue("i", 0)
        try:
            worker.process = spawn_child(
                serve,
                (child, worker.progress, self.spec, self._warm),
                name=f"deepaas-predict-{self.spec.name}-{worker.index}",
                prologue=worker_prologue(
                    worker.env, self._log_level, ignore_sigterm=True
                ),
                child_ends=(child,),
                context=self._context,
            )
        except BaseException:
            parent.close()
            raise
        worker.conn = parent
        worker.state = "starting"
        worker.pending.clear()
        worker.answered = 0
        worker.lost_gpu = None

    def start(self, timeout: float = 600.0) -> ModelDescription:
        """Start every worker and wait until each has loaded and warmed the model."""
        for worker in self._workers:
            self._spawn(worker)
        deadline = time.monotonic() + timeout
        try:
            while any(w.state == "starting" for w in self._workers):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ModelLoadError(
                        f"model {self.spec.name!r}: the workers did not finish loading "
                        f"and warming within {timeout:g} s"
                    )
                self._poll(min(remaining, 1.0))
                failed = [w for w in self._workers if w.state == "dead"]
                if failed:
                    raise failed[0].failure or ModelLoadError(
                        f"model {self.spec.name!r}: a worker failed to start"
                    )
        except BaseException:
            self.stop(grace=0)
            raise
        assert self.description is not None
        return self.description

    def stop(self, grace: float = 5.0) -> None:
        """Stop every worker: ask politely, then kill what is left after ``grace``."""
        self.stopping = True
        for worker in self._workers:
            if worker.conn is not None:
                try:
                    worker.conn.send(("stop",))
                except OSError:
                    pass
        deadline = time.monotonic() + grace
        for worker in self._workers:
            process = worker.process
            if process is None:
                continue
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)
            self._close(worker)
            worker.state = "stopped"

    def _close(self, worker: _Worker) -> None:
        if worker.conn is not None:
            worker.conn.close()
            worker.conn = None

    # -- handing out inputs -------------------------------------------------

    @property
    def alive(self) -> bool:
        """Whether any worker is answering or coming back."""
        return any(w.state in ("ready", "starting") for w in self._workers)

    def in_flight(self) -> int:
        """Inputs handed out and not answered yet."""
        return sum(w.inputs for w in self._workers)

    def chunk_size(self) -> int:
        """How many inputs the next chunk should hold."""
        if self._seconds_per_input <= 0:
            return 1
        return max(1, min(MAX_CHUNK, int(CHUNK_SECONDS / self._seconds_per_input)))

    def _free_worker(self, large: bool) -> _Worker | None:
        best: _Worker | None = None
        for worker in self._workers:
            if worker.state != "ready" or len(worker.pending) >= self._window:
                continue
            if worker.lost_gpu:  # exiting: its GPU failed
                continue
            if large and worker.pending:
                continue
            if best is None or worker.inputs < best.inputs:
                best = worker
        return best

    def room(self) -> Room | None:
        """What the next chunk may hold, or None when no worker has room."""
        worker = self._free_worker(large=False)
        if worker is None:
            return None
        inputs, held = worker.inputs, worker.bytes
        if inputs >= INPUTS_AHEAD or (inputs >= 2 and held >= BYTES_AHEAD):
            return None
        return Room(INPUTS_AHEAD - inputs, BYTES_AHEAD - held, max(0, 2 - inputs))

    def setup(self, *payload: Any) -> None:
        """What every input shares (see ``PredictCall``); sent to each worker."""
        self._setup = ("setup", *payload)
        for worker in self._workers:
            if worker.state == "ready":
                self._send_setup(worker)

    def _send_setup(self, worker: _Worker) -> None:
        if self._setup is not None and worker.conn is not None:
            try:
                worker.conn.send(self._setup)
            except OSError:
                pass

    def submit(
        self,
        kind: str,
        items: list[Any],
        requests: list[Any],
        *,
        copies: list[list[tuple[str, str]]],
        size: int = 0,
    ) -> bool:
        """Hand a chunk of inputs to a worker; False when none has room now.

        ``kind`` is ``"files"`` (requests: ``(path, media type)``) or
        ``"args"`` (requests: each input's RawArguments); ``copies`` are
        each input's ``(copy, original)`` pairs, which the worker makes again
        when a copy is gone by the time the input's turn comes (a model may
        empty the folder that holds them); ``size`` is their bytes.
        """
        self._chunk_ids += 1
        chunk_id = self._chunk_ids
        message = bytes(ForkingPickler.dumps((kind, chunk_id, requests, copies)))
        worker = self._free_worker(large=len(message) > LARGE_MESSAGE)
        if worker is None or worker.conn is None:
            return False
        worker.pending.append((chunk_id, items, size))
        for item in items:
            self._handouts[item.key] += 1
        try:
            worker.conn.send_bytes(message)
        except OSError:  # it died: its inputs are answered by the next collect()
            self._on_death(worker)
        return True

    def collect(self, timeout: float) -> list[Result]:
        """Answers that arrived within ``timeout`` seconds (maybe none)."""
        if not self._answers:
            self._poll(timeout)
        results, self._answers = self._answers, []
        return results

    # -- messages from workers ---------------------------------------------

    def _poll(self, timeout: float) -> None:
        watched: dict[Any, _Worker] = {}
        for worker in self._workers:
            if worker.conn is not None and worker.state in ("starting", "ready"):
                watched[worker.conn] = worker
                watched[worker.process.sentinel] = worker
        if not watched:
            return
        for ready in wait(list(watched), timeout):
            worker = watched[ready]
            if worker.conn is None:
                continue
            if not self._drain(worker):
                self._on_death(worker)
                continue
            if ready is not worker.conn and not worker.process.is_alive():
                self._on_death(worker)

    def _drain(self, worker: _Worker) -> bool:
        """Read every message waiting from ``worker``; False once its pipe broke."""
        try:
            while worker.conn is not None and worker.conn.poll():
                self._on_message(worker, worker.conn.recv())
        except (EOFError, OSError):
            return False
        return True

    def _on_message(self, worker: _Worker, message: Any) -> None:
        kind = message[0]
        if kind == READY:
            self.description = message[1]
            worker.state = "ready"
            LOG.debug("worker %d ready (pid %s)", worker.index, message[2])
            self._send_setup(worker)
        elif kind == FAILED:
            error, trace = start_failure(message)
            LOG.error(
                "model %r: worker %d failed to start:\n%s",
                self.spec.name,
                worker.index,
                trace,
            )
            worker.failure = ModelLoadError(
                f"model {self.spec.name!r} could not be loaded: {error.message}"
            )
            self._retire(worker)
        elif kind == "done":
            if not worker.pending:
                return
            chunk_id, items, _ = worker.pending.popleft()
            if chunk_id != message[1]:  # never expected: answers come in order
                LOG.error(
                    "worker %d answered chunk %s instead of %s",
                    worker.index,
                    message[1],
                    chunk_id,
                )
            total = 0.0
            answers = message[2]
            if len(answers) < len(items):
                # Its GPU failed: it answered up to that input and exits;
                # the others go to a fresh worker.
                self.requeued.extend(items[len(answers) :])
                items = items[: len(answers)]
            worker.answered += len(items)
            results = self._answers
            for item, answer in zip(items, answers, strict=True):
                self._handouts.pop(item.key, None)
                outcome: Any
                if answer[0] == "ok":
                    outcome = PredictOutcome(answer[1], answer[2])
                else:
                    outcome = error_from_wire(answer[1])
                    if isinstance(outcome, GpuContextLost):
                        worker.lost_gpu = gpu_fault(outcome.message) or "CUDA fault"
                self.digests[item.key] = answer[-2]  # for the provenance record
                seconds = answer[-1]
                total += seconds
                results.append((item, outcome, seconds))
            average = total / max(1, len(items))
            previous = self._seconds_per_input
            self._seconds_per_input = (
                average if previous <= 0 else 0.8 * previous + 0.2 * average
            )

    def _retire(self, worker: _Worker) -> None:
        worker.state = "dead"
        self._close(worker)
        if worker.process is not None:
            worker.process.join(1)

    def _on_death(self, worker: _Worker) -> None:
        if worker.state in ("dead", "stopped"):
            return
        was_starting = worker.state == "starting"
        # Answers it sent before dying come first: only then does ``pending``
        # start with the chunk it was working on.
        self._drain(worker)
        self._retire(worker)
        exitcode = worker.process.exitcode if worker.process is not None else None
        how = describe_exit(exitcode)
        pending = list(worker.pending)
        worker.pending.clear()
        if self.stopping:
            return
        if was_starting:
            worker.failure = ModelLoadError(
                f"model {self.spec.name!r}: worker {worker.index} died while loading: "
                f"{how}"
            )
            LOG.error("%s", worker.failure.message)
            return
        items = [item for _, chunk, _ in pending for item in chunk]
        if worker.lost_gpu:
            # It said why (one ERROR line) and answered its input first: the
            # inputs it had not started go to its replacement.
            LOG.warning(
                "model %r: worker %d exited: its GPU failed (%s)",
                self.spec.name,
                worker.index,
                worker.lost_gpu,
            )
            self.requeued.extend(items)
            items = []
        else:
            LOG.error("model %r: worker %d died: %s", self.spec.name, worker.index, how)
        # ``progress`` is 2n+1 while the worker's n-th input (0-based, counted
        # since it started) is in hand, 2n+2 once it is answered.
        state = int(worker.progress.value)
        position = (state - 1) // 2 - worker.answered if state % 2 else -1
        for index, item in enumerate(items):
            if index != position:
                # Not started, or answered with the answer lost: again.
                self.requeued.append(item)
            elif (
                exitcode in _SHUTDOWN_EXITS and self._handouts[item.key] < _MAX_HANDOUTS
            ):
                # Stopped from outside (e.g. a signal to the whole process
                # group): not this input's fault; hand it out again.
                self.requeued.append(item)
            else:
                self._handouts.pop(item.key, None)
                self._answers.append(
                    (
                        item,
                        WorkerCrashed(
                            "the worker process died while predicting this "
                            f"input: {how}"
                        ),
                        0.0,
                    )
                )
        if worker.restarts < self._max_restarts:
            worker.restarts += 1
            LOG.info("model %r: restarting worker %d", self.spec.name, worker.index)
            self._spawn(worker)
        else:
            LOG.error(
                "model %r: worker %d was restarted %d times; giving up on it",
                self.spec.name,
                worker.index,
                worker.restarts,
            )

    def restarts(self) -> int:
        return sum(w.restarts for w in self._workers)


__all__ = ["BYTES_AHEAD", "INPUTS_AHEAD", "BatchPool", "Room"]
