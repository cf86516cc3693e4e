"""Worker processes for batch runs, fed ahead so they never wait.

The API's :class:`~deepaas.model.workers.ProcessPool` hands a call to an
idle worker and waits for the answer: right for requests that arrive one by
one, but a batch knows its next inputs already.  Here each worker process
(the same :func:`~deepaas.model._worker_main.run_worker` loop) gets up to
``window`` inputs ahead, so it starts the next one the moment it answers
the last: the pipe's round trip and the recording of results overlap with
the model's work instead of adding to it.

The workers run :func:`deepaas.batch._worker.serve`.  Answers come back in
the order sent.  When a worker dies, the input it was
working on (the oldest unanswered) is recorded as failed, the inputs queued
behind it are handed out again, and the worker is restarted.  Workers
ignore SIGTERM and SIGINT: the batch process decides, on those signals,
whether to wait for the inputs in hand or to stop the workers.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import signal
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from typing import Any

from deepaas.batch._worker import error_from_wire, serve
from deepaas.exceptions import DeepaasError, ModelLoadError, WorkerCrashed
from deepaas.model.description import ModelDescription
from deepaas.model.loading import ModelSpec
from deepaas.model.wrapper import PredictOutcome

LOG = logging.getLogger(__name__)

#: Messages larger than this are sent only to a worker with nothing queued,
#: so that the batch process never blocks writing to a worker that is itself
#: blocked writing a large answer back.
LARGE_MESSAGE = 32 * 1024
#: Signals after which a dead worker is not blamed on its input.
_SHUTDOWN_EXITS = {-signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP}
_MAX_HANDOUTS = 3


def describe_exit(exitcode: int | None) -> str:
    """Say how a worker ended, in words a user understands."""
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
    def __init__(self, index: int, env: dict[str, str]) -> None:
        self.index = index
        self.env = env
        self.process: Any = None
        self.conn: Connection | None = None
        self.state = "stopped"  # starting | ready | dead | stopped
        #: (call id, item, time sent) of the inputs handed out, oldest first.
        self.pending: collections.deque[tuple[int, Any, float]] = collections.deque()
        self.last_answer = 0.0
        self.restarts = 0
        self.failure: DeepaasError | None = None


Result = tuple[Any, Any, float]  # (item, PredictOutcome | DeepaasError, seconds)


class BatchPool:
    """``size`` model processes, each fed up to ``window`` inputs ahead."""

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
        self._context = multiprocessing.get_context("spawn")
        self._workers = [_Worker(i, env) for i, env in enumerate(envs)]
        self._call_ids = 0
        self._handouts: collections.Counter[str] = collections.Counter()
        self.description: ModelDescription | None = None
        self._setup: tuple[Any, ...] | None = None
        self.requeued: collections.deque[Any] = collections.deque()
        #: Set by the caller when the run is being stopped: a worker that dies
        #: then is not restarted and its inputs are abandoned, not failed.
        self.stopping = False

    # -- life cycle ---------------------------------------------------------

    def _spawn(self, worker: _Worker) -> None:
        parent, child = self._context.Pipe(duplex=True)
        worker.process = self._context.Process(
            target=serve,
            args=(child, self.spec, self._warm, worker.env, self._log_level),
            name=f"deepaas-predict-{self.spec.name}-{worker.index}",
            daemon=True,
        )
        worker.process.start()
        child.close()
        worker.conn = parent
        worker.state = "starting"
        worker.pending.clear()

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
                self._poll(min(remaining, 1.0), results=[])
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
        return sum(len(w.pending) for w in self._workers)

    def _free_worker(self, large: bool) -> _Worker | None:
        best: _Worker | None = None
        for worker in self._workers:
            if worker.state != "ready" or len(worker.pending) >= self._window:
                continue
            if large and worker.pending:
                continue
            if best is None or len(worker.pending) < len(best.pending):
                best = worker
        return best

    def has_room(self) -> bool:
        """Whether an input sent now would be handed to a worker at once."""
        return self._free_worker(large=False) is not None

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

    def submit(self, item: Any, kind: str, *payload: Any) -> bool:
        """Hand ``item`` to a worker; False when none has room for it now.

        ``kind`` is ``"file"`` (payload: path, media type) or ``"args"``
        (payload: the input's RawArguments).
        """
        self._call_ids += 1
        call_id = self._call_ids
        message = bytes(ForkingPickler.dumps((kind, call_id, *payload)))
        worker = self._free_worker(large=len(message) > LARGE_MESSAGE)
        if worker is None or worker.conn is None:
            return False
        now = time.monotonic()
        if not worker.pending:
            worker.last_answer = now
        worker.pending.append((call_id, item, now))
        self._handouts[item.key] += 1
        try:
            worker.conn.send_bytes(message)
        except OSError:
            self._on_death(worker, results=[])
        return True

    def collect(self, timeout: float) -> list[Result]:
        """Answers that arrived within ``timeout`` seconds (maybe none)."""
        results: list[Result] = []
        self._poll(timeout, results)
        return results

    # -- messages from workers ---------------------------------------------

    def _poll(self, timeout: float, results: list[Result]) -> None:
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
            try:
                while worker.conn is not None and worker.conn.poll():
                    self._on_message(worker, worker.conn.recv(), results)
            except (EOFError, OSError):
                self._on_death(worker, results)
                continue
            if ready is not worker.conn and not worker.process.is_alive():
                self._on_death(worker, results)

    def _on_message(self, worker: _Worker, message: Any, results: list[Result]) -> None:
        kind = message[0]
        if kind == "ready":
            self.description = message[1]
            worker.state = "ready"
            LOG.debug("worker %d ready (pid %s)", worker.index, message[2])
            self._send_setup(worker)
        elif kind == "failed":
            LOG.error(
                "model %r: worker %d failed to start:\n%s",
                self.spec.name,
                worker.index,
                message[2],
            )
            worker.failure = ModelLoadError(
                f"model {self.spec.name!r} could not be loaded: {message[1]}"
            )
            self._retire(worker)
        elif kind in ("ok", "error"):
            if not worker.pending:
                return
            call_id, item, _ = worker.pending.popleft()
            now = time.monotonic()
            seconds = now - worker.last_answer
            worker.last_answer = now
            self._handouts.pop(item.key, None)
            if call_id != message[1]:  # never expected: answers come in order
                LOG.error(
                    "worker %d answered call %s instead of %s",
                    worker.index,
                    message[1],
                    call_id,
                )
            outcome: Any
            if kind == "ok":
                outcome = PredictOutcome(message[2], message[3])
            else:
                outcome = error_from_wire(message[2])
            results.append((item, outcome, seconds))

    def _retire(self, worker: _Worker) -> None:
        worker.state = "dead"
        self._close(worker)
        if worker.process is not None:
            worker.process.join(1)

    def _on_death(self, worker: _Worker, results: list[Result]) -> None:
        if worker.state in ("dead", "stopped"):
            return
        was_starting = worker.state == "starting"
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
        LOG.error("model %r: worker %d died: %s", self.spec.name, worker.index, how)
        if pending:
            _, item, _ = pending[0]
            if exitcode in _SHUTDOWN_EXITS and self._handouts[item.key] < _MAX_HANDOUTS:
                # Stopped from outside (e.g. a signal to the whole process
                # group): not this input's fault; hand it out again.
                self.requeued.append(item)
            else:
                self._handouts.pop(item.key, None)
                results.append(
                    (
                        item,
                        WorkerCrashed(
                            "the worker process died while predicting this input: "
                            f"{how}"
                        ),
                        time.monotonic() - worker.last_answer,
                    )
                )
            self.requeued.extend(queued for _, queued, _ in pending[1:])
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


__all__ = ["BatchPool"]
