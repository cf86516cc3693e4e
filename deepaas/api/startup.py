"""The server's start-up: models warm in the background while it answers.

``deepaas-run`` opens its port before the workers are warm, so that
``/health`` answers a liveness probe at once and ``/ready`` says what the
server is doing (``starting: warming <model>``).  A request that needs the
models (their listings, the API descriptions, predict and train) waits here
until they are warm, rather than being refused: DEEPaaS 2.x clients do not
retry.  The wait is bounded like a worker queue: beyond ``max_waiting``
requests, the next is answered 503 (:class:`~deepaas.exceptions.QueueFull`).
A start-up that fails answers its waiters 503 and lets the server exit with
the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from aiohttp import web

from deepaas.engine.executor import Executor
from deepaas.exceptions import DeepaasError, NotStarted, QueueFull

LOG = logging.getLogger(__name__)


class Startup:
    """Starts (loads and warms) every executor in turn, in the background.

    What it is doing (:attr:`pending`), whether it is done (:attr:`started`)
    and why it failed (:attr:`error`) live here, on the application (under
    :data:`STARTUP`), for ``/ready`` and the route wrapper to read.
    """

    def __init__(
        self, executors: Mapping[str, Executor], *, max_waiting: int = 64
    ) -> None:
        if max_waiting < 1:
            raise ValueError(f"max_waiting must be >= 1 (got {max_waiting})")
        self._executors = executors
        self._max_waiting = max_waiting
        self._waiting = 0
        self._finished = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started: list[Executor] = []
        self._current: Executor | None = None
        #: What start-up is doing while it runs (for ``/ready``).
        self.phase = "starting"
        #: True once every executor is warm.
        self.started = False
        #: Why start-up failed (or that it was stopped), once it has.
        self.error: BaseException | None = None

    @property
    def pending(self) -> str:
        """``/ready``'s status while not started (``starting: ...``); else ""."""
        if self.started:
            return ""
        if self.error is not None:
            return f"not started: {_message(self.error)}"
        return f"starting: {self.phase}"

    def begin(self) -> None:
        """Start the executors in a task of the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            for name, executor in self._executors.items():
                self.phase = f"warming {name}"
                self._current = executor
                await executor.start()
                self._started.append(executor)
                self._current = None
            self.started = True
        except asyncio.CancelledError:
            self.error = NotStarted("the server is stopping")
            raise
        except BaseException as exc:  # recorded here, raised by whoever waits
            self.error = exc
        finally:
            self._finished.set()

    async def finished(self) -> bool:
        """Wait until start-up ends; True when every model is warm."""
        await self._finished.wait()
        return self.started

    async def wait(self) -> None:
        """Return once the models are warm; raise a 503 error if they never will be.

        Called by the routes that need the models: a request arriving while
        they warm waits, within the bound given as ``max_waiting``.
        """
        if self.started:
            return
        if self.error is None:
            if self._waiting >= self._max_waiting:
                raise QueueFull(
                    f"{self._waiting} requests are already waiting for the models "
                    f"to be ready ({self.phase}); retry later (--max-queue)"
                )
            self._waiting += 1
            try:
                await self._finished.wait()
            finally:
                self._waiting -= 1
            if self.started:
                return
        raise NotStarted(f"the server could not start: {_message(self.error)}")

    async def cancel(self) -> None:
        """Stop a start-up still running (the server is stopping)."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Cancel start-up if it still runs, then stop what it started."""
        await self.cancel()
        stopping = list(self._started)
        if self._current is not None:
            stopping.append(self._current)
        self._started.clear()
        self._current = None
        for executor in stopping:
            try:
                await executor.stop()
            except Exception:
                LOG.debug("stopping %r failed", executor.spec.name, exc_info=True)


def _message(error: BaseException | None) -> str:
    if isinstance(error, DeepaasError):
        return error.message
    return str(error) or type(error).__name__


STARTUP = web.AppKey("deepaas_startup", Startup)

__all__ = ["STARTUP", "Startup"]
