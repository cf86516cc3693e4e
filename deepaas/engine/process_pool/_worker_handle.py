"""The API process's handle on one worker process and its two sockets.

The first socket carries the calls that queue for the worker (predict,
predict_batch) and is read by the pool.  The second, ``control``, carries
the calls that must not wait behind predictions (training-argument
validation): a thread of the worker answers them even while it predicts,
and their pending answers live here.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deepaas.engine.process_pool._worker_main import run_worker
from deepaas.engine.processes import spawn_child, worker_prologue
from deepaas.engine.processes.wire import MessageReader, error_from_wire
from deepaas.exceptions import (
    CallTimeout,
    DeepaasError,
    ModelLoadError,
    WorkerCrashed,
)
from deepaas.model.loading import ModelSpec
from deepaas.model.wrapper import RawArguments

#: Restart backoff: the first wait, doubled per failure in a row, capped.
FIRST_BACKOFF = 0.25
MAX_BACKOFF = 30.0
#: A worker healthy this long starts its backoff afresh after a crash.
HEALTHY_AFTER = 60.0
#: Weight of the newest call in a worker's running mean of call durations.
_DURATION_WEIGHT = 0.2


@dataclass
class SentCall:
    """A call written to a worker's socket and not answered yet.

    A worker answers its calls in the order they were sent, so the oldest
    one is the call it is running and the others wait in its socket.
    """

    call_id: int
    answer: asyncio.Future[Any]
    timer: asyncio.TimerHandle | None = None
    #: Its caller may stop it: nothing waits behind it in the socket.
    interruptible: bool = False


class WorkerHandle:
    """One worker process as the pool sees it: state, process and sockets."""

    def __init__(self, index: int, env: dict[str, str]) -> None:
        self.index = index
        self.env = env
        self.process: Any = None
        self.channel: MessageReader | None = None
        #: starting | idle | busy | retiring (exiting: its GPU failed) | dead
        #: | stopped
        self.state = "stopped"
        #: Calls sent and not answered yet, oldest (the running one) first.
        self.sent: collections.deque[SentCall] = collections.deque()
        #: Calls this worker has been given: sent, or about to be.
        self.load = 0
        #: Running mean of how long a call takes here (None: not measured).
        self.call_seconds: float | None = None
        #: When the oldest sent call started running (time.monotonic()).
        self.running_since = 0.0
        self.ready: asyncio.Future[None] | None = None
        #: What the model declares, when this worker describes it (spawned
        #: with ``describe_first``).
        self.facts: asyncio.Future[dict[str, Any]] | None = None
        #: Started with ``describe_first``.
        self.describing = False
        #: The API process's ends of a process launched and not connected.
        self._launched: tuple[socket.socket, socket.socket] | None = None
        self.failures = 0
        self.ready_since = 0.0
        self.restarts = 0
        self.timed_out = False
        #: Killed because the caller of its running call stopped that call.
        self.interrupted = False
        #: The fault it answered, after which it exits (its GPU failed).
        self.lost_gpu: str | None = None
        #: Running an interruptible call: it takes no other call meanwhile.
        self.exclusive = False
        #: When it last took a call (time.monotonic()), for stall detection.
        self.busy_since = 0.0
        self.control: MessageReader | None = None
        self._validations: dict[int, asyncio.Future[Any]] = {}

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def count_failure(self, *, while_serving: bool) -> None:
        """One more failure in a row: a death ``while_serving`` after a long
        healthy run starts the count afresh; a failed restart never does."""
        if while_serving and time.monotonic() - self.ready_since > HEALTHY_AFTER:
            self.failures = 0
        self.failures += 1

    def backoff(self) -> float:
        """Seconds to wait before the next restart: doubling, capped."""
        return float(min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (self.failures - 1)))

    async def spawn(
        self,
        context: Any,
        spec: ModelSpec,
        *,
        warm: bool,
        log_level: int,
        on_message: Callable[[WorkerHandle, tuple[Any, ...]], None],
        on_closed: Callable[[WorkerHandle, Any], None],
        describe_first: bool = False,
    ) -> None:
        """Start the process and connect both sockets (it then warms up;
        with ``describe_first`` it reports the model's facts and waits).

        A process already started by :meth:`launch` is only connected.
        """
        if self._launched is None:
            self.launch(
                context,
                spec,
                warm=warm,
                log_level=log_level,
                describe_first=describe_first,
            )
        assert self._launched is not None
        (parent_sock, control_parent), self._launched = self._launched, None
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        self.facts = loop.create_future() if self.describing else None
        process = self.process
        _, self.channel = await loop.connect_accepted_socket(
            lambda: MessageReader(
                lambda message: on_message(self, message),
                lambda: on_closed(self, process),
            ),
            sock=parent_sock,
        )
        _, self.control = await loop.connect_accepted_socket(
            lambda: MessageReader(self._on_control, lambda: self._control_closed(spec)),
            sock=control_parent,
        )

    def launch(
        self,
        context: Any,
        spec: ModelSpec,
        *,
        warm: bool,
        log_level: int,
        describe_first: bool = False,
    ) -> None:
        """Start the process now, without an event loop; :meth:`spawn`
        connects it later.  What it says meanwhile waits in its sockets.

        Call it from the thread that will run the event loop: the worker's
        parent-death signal is tied to the thread that started it.
        """
        parent_sock, child_sock = socket.socketpair()
        control_parent, control_child = socket.socketpair()
        self.state = "starting"
        self.timed_out = False
        self.interrupted = False
        self.lost_gpu = None
        self.exclusive = False
        self.sent.clear()
        self.load = 0
        self.call_seconds = None
        self.describing = describe_first
        try:
            process = spawn_child(
                run_worker,
                (child_sock, spec, warm, control_child, describe_first),
                name=f"deepaas-worker-{spec.name}-{self.index}",
                prologue=worker_prologue(self.env, log_level),
                child_ends=(child_sock, control_child),
                context=context,
            )
        except BaseException:
            for sock in (parent_sock, control_parent):
                sock.close()
            raise
        self.process = process
        self._launched = (parent_sock, control_parent)

    async def await_ready(self, spec: ModelSpec, timeout: float) -> None:
        """Wait until the worker has loaded and warmed the model."""
        assert self.ready is not None
        try:
            await asyncio.wait_for(asyncio.shield(self.ready), timeout)
        except asyncio.TimeoutError:
            raise ModelLoadError(
                f"model {spec.name!r}: worker {self.index} did not finish "
                f"loading and warming within {timeout:g} s"
            ) from None

    async def await_facts(self, spec: ModelSpec, timeout: float) -> dict[str, Any]:
        """Wait until a ``describe_first`` worker has imported the model and
        said what it declares; raise its start-up error if it failed."""
        assert self.facts is not None and self.ready is not None
        await asyncio.wait(
            (self.facts, self.ready),
            timeout=timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self.facts.done():
            return self.facts.result()
        if self.ready.done():
            self.ready.result()  # raises why it could not start
        raise ModelLoadError(
            f"model {spec.name!r}: worker {self.index} did not finish "
            f"loading within {timeout:g} s"
        )

    async def join(self, deadline: float, error: DeepaasError) -> None:
        """Wait for the stopping process until ``deadline``, then kill it.

        A call still in hand, or a warm-up still awaited, fails with ``error``.
        """
        loop = asyncio.get_running_loop()
        process = self.process
        if process is not None:
            remaining = max(0.0, deadline - time.monotonic())
            await loop.run_in_executor(None, process.join, remaining)
            if process.is_alive():
                process.kill()
                await loop.run_in_executor(None, process.join, 5)
        self.close_sockets()
        self.fail_sent(error)
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(ModelLoadError("the server is stopping"))
            self.ready.exception()  # retrieved: nobody else awaits it
        self.state = "stopped"

    def fail_sent(self, error: BaseException) -> None:
        """Answer every sent call with ``error`` (the worker is gone)."""
        sent, self.sent = list(self.sent), collections.deque()
        self.load = 0
        for call in sent:
            if call.timer is not None:
                call.timer.cancel()
            if not call.answer.done():
                call.answer.set_exception(error)

    def count_duration(self, seconds: float) -> None:
        """Fold one call's duration into the running mean."""
        if self.call_seconds is None:
            self.call_seconds = seconds
        else:
            self.call_seconds += _DURATION_WEIGHT * (seconds - self.call_seconds)

    def kill(self) -> None:
        """Kill the process; its death is handled like any crash."""
        if self.process is not None and self.process.is_alive():
            self.process.kill()

    def close_sockets(self) -> None:
        for reader in (self.channel, self.control):
            if reader is not None:
                reader.close()
        self.channel = self.control = None
        if self._launched is not None:
            for sock in self._launched:
                sock.close()
            self._launched = None

    async def validate_train(
        self, call_id: int, raw: RawArguments, *, spec: ModelSpec, timeout: float
    ) -> dict[str, Any]:
        """Validate training arguments on the second socket (0: no timeout)."""
        answer: asyncio.Future[dict[str, Any]] = (
            asyncio.get_running_loop().create_future()
        )
        self._validations[call_id] = answer
        try:
            if self.control is None or not self.control.send(
                ("validate_train", call_id, raw)
            ):
                raise WorkerCrashed(
                    f"the worker process of model {spec.name!r} is gone; "
                    "it is being restarted"
                )
            if not timeout:
                return await answer
            try:
                return await asyncio.wait_for(answer, timeout)
            except asyncio.TimeoutError:
                raise CallTimeout(
                    f"model {spec.name!r} did not validate the training "
                    f"arguments within {timeout:g} s (--predict-timeout)"
                ) from None
        finally:
            self._validations.pop(call_id, None)

    def _on_control(self, message: tuple[Any, ...]) -> None:
        answer = self._validations.pop(message[1], None)
        if answer is None or answer.done():
            return  # its caller went away
        if message[0] == "error":
            answer.set_exception(error_from_wire(message[2]))
        else:
            answer.set_result(message[2])

    def _control_closed(self, spec: ModelSpec) -> None:
        pending = list(self._validations.values())
        self._validations.clear()
        for answer in pending:
            if not answer.done():
                answer.set_exception(
                    WorkerCrashed(
                        f"the worker process of model {spec.name!r} died while "
                        "validating training arguments; it is being restarted"
                    )
                )
