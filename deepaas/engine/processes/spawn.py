"""Starting a child process, its start-up handshake, and how it ended.

Every process deepaas starts for a model (a serving worker, a batch
worker, the start-up probe, a training) is started by :func:`spawn_child`:
a fresh ``spawn`` interpreter (safe for CUDA and TensorFlow, which a
forked copy of a threaded parent is not) that runs its
:class:`~deepaas.engine.processes.prologue.Prologue` before its target.

A child that loads a model then says how its start went, once: a
``("ready", payload, pid)`` message (:func:`report_ready`) or a
``("failed", wire error, traceback)`` one (:func:`start_child`), over
whatever connection its parent gave it.  What it does next, its loop, is
its own.  When a child ends, :func:`describe_exit` says how, in words a
user understands.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any, Protocol, TypeVar

from deepaas.engine.processes.lost_gpu import GPU_FAILED_EXIT
from deepaas.engine.processes.prologue import Prologue, freeze_startup_objects
from deepaas.engine.processes.wire import error_from_wire, start_error
from deepaas.exceptions import DeepaasError

T = TypeVar("T")

#: The first message of a child that loaded its model: ``(READY, payload, pid)``.
READY = "ready"
#: The first message of a child that could not: ``(FAILED, wire error, traceback)``.
FAILED = "failed"


class _Closable(Protocol):
    def close(self) -> None: ...


def spawn_context() -> SpawnContext:
    """The ``spawn`` start method's context, which every child is started with."""
    return multiprocessing.get_context("spawn")


def spawn_child(
    target: Callable[..., None],
    args: tuple[Any, ...],
    *,
    name: str,
    prologue: Prologue | None,
    child_ends: Iterable[_Closable] = (),
    daemon: bool = True,
    context: Any = None,
) -> BaseProcess:
    """Start ``target(*args)`` in a fresh ``spawn`` interpreter.

    The child runs ``prologue`` first (None: the target sets itself up, as
    a training does, in a session of its own).  ``child_ends`` are the
    child's ends of its sockets or pipes: the child has its copies once
    started, so this process closes them here, whether the start worked or
    not.  ``daemon`` children are terminated by multiprocessing when this
    process exits without stopping them.  Call it from the thread that
    will watch the child: the child's parent-death signal is tied to it.
    """
    if prologue is not None:
        target, args = _child_main, (prologue, target, args)
    if context is None:
        context = spawn_context()
    process: BaseProcess = context.Process(
        target=target, args=args, name=name, daemon=daemon
    )
    try:
        process.start()
    finally:
        for end in child_ends:
            end.close()
    return process


def _child_main(
    prologue: Prologue, target: Callable[..., None], args: tuple[Any, ...]
) -> None:
    """A spawned child's whole life: its prologue, then its target."""
    prologue.run()
    target(*args)


# -- the start-up handshake, child side ------------------------------------


def start_child(
    send: Callable[[Any], None],
    name: str,
    start: Callable[[], T],
    *,
    named: bool = True,
) -> T | None:
    """Run the child's start-up (``start``: import, warm) and answer what it
    answers; a failure is sent to the parent as one ``failed`` message
    instead, and answers None.

    Every failure is reported, ``SystemExit`` from a model's import
    included: the parent then says why in one line, rather than that the
    child exited.  ``named``: see :func:`~deepaas.engine.processes.wire.
    start_error`.
    """
    try:
        return start()
    except BaseException as exc:  # report every start-up failure to the parent
        send((FAILED, *start_error(name, exc, named=named)))
        return None


def report_ready(
    send: Callable[[Any], None], payload: Any, *, freeze: bool = True
) -> None:
    """Tell the parent this child has started: ``payload`` and its pid.

    Start-up is over, so what it loaded is first kept out of the garbage
    collector's scans (:func:`~deepaas.engine.processes.prologue.
    freeze_startup_objects`), unless ``freeze`` is False (a child that
    exits once it has answered, such as the probe, spares itself that).
    """
    if freeze:
        freeze_startup_objects()
    send((READY, payload, os.getpid()))


# -- the start-up handshake, parent side -----------------------------------


def start_failure(message: tuple[Any, ...]) -> tuple[DeepaasError, str]:
    """The error and the child's traceback of a ``failed`` message."""
    return error_from_wire(message[1]), message[2]


def ready_payload(message: tuple[Any, ...]) -> Any:
    """A child's first message: its ready payload, or raise why it failed."""
    if message[0] == FAILED:
        raise error_from_wire(message[1])
    return message[1]


# -- the end ----------------------------------------------------------------


def describe_exit(exitcode: int | None) -> str:
    """Say how a process ended, in words a user understands."""
    if exitcode is None:
        return "it closed its connection and stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hints = {
            "SIGKILL": " (often: killed for using too much memory)",
            "SIGSEGV": " (a segmentation fault in native code)",
        }
        return f"it was killed by {name}{hints.get(name, '')}"
    if exitcode == GPU_FAILED_EXIT:
        return (
            f"it exited with code {exitcode}: its GPU failed and it could no "
            "longer use it"
        )
    return f"it exited with code {exitcode}"
