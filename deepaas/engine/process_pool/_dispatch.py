"""Which worker takes the next call, and the queue of calls waiting for one.

The pool's waiting room (:class:`~deepaas.engine.process_pool.pool.ProcessPool` owns
one).  A call goes to an idle worker; or, when a worker's calls are short
(``PIPELINE_CALL_SECONDS`` on average), it waits in that worker's socket
behind at most ``PIPELINE_DEPTH - 1`` others, which spares the worker a
round trip through the event loop per call; otherwise it waits here, in a
queue bounded by ``max_queue``.  Everything runs on the event loop: no
locks.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence

from deepaas.engine.executor import ExecutorStats
from deepaas.engine.process_pool._worker_handle import WorkerHandle
from deepaas.exceptions import DeepaasError, QueueFull, WorkerCrashed

#: How many calls a worker with short calls may hold at once (one running,
#: the others waiting in its socket).
PIPELINE_DEPTH = 8
#: Calls shorter than this on average (seconds) may wait in a worker's socket.
PIPELINE_CALL_SECONDS = 0.002


class Dispatcher:
    """Hands workers to calls: idle ones first, then short-call pipelines,
    then a bounded FIFO queue.

    ``restarting`` says whether a dead worker is being brought back, so
    that a waiter never hangs when no worker is alive or coming back.
    """

    def __init__(
        self,
        workers: Sequence[WorkerHandle],
        *,
        model: str,
        max_queue: int,
        stats: ExecutorStats,
        restarting: Callable[[], bool],
    ) -> None:
        self._workers = workers
        self._model = model
        self.max_queue = max_queue
        self._stats = stats
        self._restarting = restarting
        #: Ready workers with no call.
        self.idle: collections.deque[WorkerHandle] = collections.deque()
        #: Calls waiting for a worker, in order.
        self.waiters: collections.deque[asyncio.Future[WorkerHandle]] = (
            collections.deque()
        )
        #: Waiters that take only a free worker (interruptible calls).
        self._alone: set[asyncio.Future[WorkerHandle]] = set()
        #: Set when the pool stops: no call waits any more.
        self.stopping = False

    def fail_waiters(self, error: DeepaasError) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def _fail_waiters_if_hopeless(self) -> None:
        """Never let a waiter hang when no worker is alive or coming back."""
        # A retiring worker (its GPU failed) is about to be restarted.
        alive = ("idle", "busy", "starting", "retiring")
        if any(w.state in alive for w in self._workers):
            return
        if self._restarting():
            return
        self.fail_waiters(WorkerCrashed(f"no worker of model {self._model!r} is alive"))

    def can_take(self, worker: WorkerHandle) -> bool:
        """Whether a ready worker may be given one more call now.

        An idle worker always may.  A busy one may only when its calls are
        short (PIPELINE_CALL_SECONDS on average): the next call then waits in
        its socket instead of in the pool, which saves a round trip through
        the event loop per call.  Slow calls queue in the pool, where another
        worker that frees up, or a caller that goes away, can still change
        their fate.
        """
        if worker.state not in ("idle", "busy"):
            return False
        if worker.load == 0:
            return True
        seconds = worker.call_seconds
        return (
            not worker.exclusive
            and worker.load < PIPELINE_DEPTH
            and seconds is not None
            and seconds < PIPELINE_CALL_SECONDS
            # A call running longer than short calls take is a slow one:
            # nothing more waits behind it while another worker may free up.
            and time.monotonic() - worker.running_since < PIPELINE_CALL_SECONDS
        )

    def take(self, worker: WorkerHandle) -> None:
        """Give ``worker`` one more call (``_can_take`` said it may)."""
        if worker.load == 0:
            if worker in self.idle:
                self.idle.remove(worker)
            worker.busy_since = time.monotonic()
        worker.load += 1
        worker.state = "busy"

    def pick(self) -> WorkerHandle | None:
        """An idle worker, else the least loaded one that may take more."""
        if self.idle:
            return self.idle[0]
        best = None
        for worker in self._workers:
            if self.can_take(worker) and (best is None or worker.load < best.load):
                best = worker
        return best

    def release(self, worker: WorkerHandle) -> None:
        """One of ``worker``'s calls ended, or was never sent."""
        worker.load = max(0, worker.load - 1)
        self.offer(worker)

    def offer(self, worker: WorkerHandle) -> None:
        """Hand what ``worker`` can take to the waiting callers, in order."""
        while self.waiters and self.can_take(worker):
            waiter = self.waiters[0]
            if not waiter.done() and worker.load and waiter in self._alone:
                break  # it waits for a free worker, and the others behind it
            self.waiters.popleft()
            if not waiter.done():
                self.take(worker)
                waiter.set_result(worker)
        if worker.load == 0:
            worker.state = "idle"
            if worker not in self.idle:
                self.idle.append(worker)

    async def acquire(
        self, *, again: bool = False, alone: bool = False
    ) -> WorkerHandle:
        """A worker that has taken this call; ``again``: a call sent to a
        worker that died before starting it, which goes first; ``alone``:
        only a free worker will do (nothing queued in its socket)."""
        worker = self.idle[0] if alone and self.idle else None
        if not alone:
            worker = self.pick()
        if worker is not None:
            self.take(worker)
            return worker
        if self.stopping:
            raise WorkerCrashed("the server is shutting down")
        if not again and len(self.waiters) >= self.max_queue:
            raise QueueFull(
                f"model {self._model!r}: {len(self.waiters)} requests are already "
                "waiting for a worker; retry later (--max-queue)"
            )
        waiter: asyncio.Future[WorkerHandle] = (
            asyncio.get_running_loop().create_future()
        )
        if again:
            self.waiters.appendleft(waiter)
        else:
            self.waiters.append(waiter)
        if alone:
            self._alone.add(waiter)
            waiter.add_done_callback(self._alone.discard)
        self._fail_waiters_if_hopeless()
        try:
            return await waiter
        except asyncio.CancelledError:
            # The caller went away (e.g. its client disconnected): it leaves
            # the queue, or hands on the worker it was just given.
            self._stats.abandoned += 1
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())
            elif waiter in self.waiters:
                self.waiters.remove(waiter)
            raise
