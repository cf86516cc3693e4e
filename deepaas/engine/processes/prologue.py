"""What a spawned child does first, before it imports any model.

:func:`deepaas.engine.processes.spawn.spawn_child` runs a :class:`Prologue`
in the child before its target: the environment the parent chose (e.g.
``CUDA_VISIBLE_DEVICES``), death with the parent, containment of the
processes the model starts, the signals the parent handles for it and its
logging.  The helpers a console script calls around its children live here
too (:func:`children_skip_main_module`, :func:`freeze_startup_objects`).
"""

from __future__ import annotations

import dataclasses
import gc
import multiprocessing
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

from deepaas.engine.processes import guard as _guard_program
from deepaas.log import setup_worker_logging

_PR_SET_PDEATHSIG = 1

#: How long the guard lets a dead worker's processes exit on SIGTERM.
DESCENDANTS_GRACE = 2.0


def die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


@dataclasses.dataclass(frozen=True)
class Prologue:
    """What a spawned child does first, before its target imports any model.

    The environment comes first (``CUDA_VISIBLE_DEVICES`` must be set before
    a framework reads it), then the child ties its life to its parent's and
    contains what it starts (:func:`die_with_parent`,
    :func:`contain_children`).  Ctrl-C, a batch scheduler or a service
    manager may signal every process, but the parent decides when its
    children stop, so they disregard the signals in ``disregard`` and
    finish the call in hand.

    They disregard them with a handler that does nothing rather than by
    ignoring them: an ignored signal stays ignored in every process the
    model starts, and a ``multiprocessing.Pool`` whose workers ignore
    SIGTERM hangs when it is closed.  Handlers are reset by ``exec``, and a
    fork from the child restores the defaults.
    """

    #: Set in the child's ``os.environ`` before anything else.
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Log where ``deepaas-run`` logs (else to stderr) at this level; None
    #: leaves logging as Python starts it.
    log_level: int | None = None
    #: Signals the child disregards: its parent handles them.
    disregard: tuple[signal.Signals, ...] = (signal.SIGINT,)

    def run(self) -> None:
        """Set up this freshly spawned child (see the class docstring)."""
        os.environ.update(self.env)
        die_with_parent()
        contain_children()
        for signum in self.disregard:
            signal.signal(signum, _disregard)
        if self.disregard:
            os.register_at_fork(after_in_child=_restore_default_signals)
        if self.log_level is not None:
            setup_worker_logging(self.log_level)  # where deepaas-run logs


def worker_prologue(
    env: Mapping[str, str], log_level: int, *, ignore_sigterm: bool = False
) -> Prologue:
    """The prologue of a serving or batch worker: SIGINT disregarded (and
    SIGTERM, when the parent handles that too), logging where the parent's
    goes."""
    disregard = (signal.SIGINT, signal.SIGTERM) if ignore_sigterm else (signal.SIGINT,)
    return Prologue(env=dict(env), log_level=log_level, disregard=disregard)


def _disregard(signum: int, frame: Any) -> None:
    """A handler that does nothing: the parent decides when a child stops."""


def _restore_default_signals() -> None:
    """In a process forked from a child: SIGINT and SIGTERM as Python has them."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def contain_children(grace: float = DESCENDANTS_GRACE) -> None:
    """Let this worker start processes, and make them all die with it.

    The parent marks its workers daemonic, so that multiprocessing
    terminates them when the parent exits without stopping them; but
    multiprocessing then refuses to start any process inside a worker
    ("daemonic processes are not allowed to have children"), which breaks a
    model's ``multiprocessing.Pool``, ``ProcessPoolExecutor`` or torch
    ``DataLoader(num_workers>0)``.  The worker clears the flag on itself:
    the parent's guarantee stays, the model may start processes.

    What the model starts must not outlive the worker, whether the worker
    stops, is killed on a timeout or restart, or dies with its server
    (``PR_SET_PDEATHSIG``, even when the server is killed with SIGKILL).  A
    parent-death signal is not inherited by the processes the model starts,
    and a killed worker cannot clean up after itself, so on Linux:

    * the worker leads a new process group, which every process it starts
      joins (unless that process starts a session or group of its own);
    * it forks a small guard, outside that group, that waits for the worker
      to end (a pidfd), then sends SIGTERM to the group, and SIGKILL to
      whatever is left after ``grace`` seconds.

    The guard is forked before the model is imported: it is a copy of a
    small interpreter, closes every inherited file (so that the worker's
    end of its socket closes when the worker dies) and runs no Python code
    that could block on the model.
    """
    multiprocessing.current_process().daemon = False
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpgid(0, 0)
    except OSError:
        return  # cannot lead a group (e.g. a session leader): nothing to guard
    worker = os.getpid()
    try:
        guard = os.fork()
    except OSError:
        return
    if guard == 0:
        _guard(worker, grace)  # never returns
    try:
        os.setpgid(guard, guard)  # also here: the worker may die before it does
    except OSError:
        pass


def _guard(worker: int, grace: float) -> None:
    """The guard's whole life: wait for the worker, then stop its group.

    It runs as a fresh small interpreter (``guard.py``), much smaller than
    this fork of the worker; where that cannot start, this fork does the
    same itself.
    """
    try:
        os.setpgid(0, 0)  # out of the group it will signal
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # it ends with the worker
        _close_inherited_files()
        try:
            os.execv(  # noqa: S606 (this interpreter, a fixed program)
                sys.executable,
                [
                    sys.executable,
                    "-I",
                    "-S",
                    _guard_program.__file__,
                    str(worker),
                    str(grace),
                ],
            )
        except OSError:
            pass
        _guard_program.name_process("deepaas-guard")
        _guard_program.wait_for_parent(worker)
        _guard_program.stop_group(worker, grace)
    finally:
        os._exit(0)


def _close_inherited_files() -> None:
    """Close every file but the standard streams (the worker's socket too)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass


def freeze_startup_objects() -> None:
    """Keep everything loaded so far out of the garbage collector's scans.

    Once a process has imported its framework and model, the tens of
    thousands of objects that hold them live until it exits.  Without this
    the collector walks them again every time per-request garbage triggers
    a full collection; frozen, a collection only looks at what requests
    created.  Called once, when start-up (imports and warm-up) is done.
    """
    gc.collect()
    gc.freeze()


def children_skip_main_module() -> None:
    """Spawned children of this process will not re-run its main module.

    Python's ``spawn`` start method runs the parent's ``__main__`` again in
    every child (as ``__mp_main__``).  For a deepaas console script that
    main is ``deepaas-run``'s (or ``deepaas-predict``'s) whole HTTP and
    option stack, about a third of a second per child, which no child
    uses: every target a deepaas child runs lives in its own module.  So a
    console script calls this first thing (one thread then, nothing spawned
    yet): ``__main__`` keeps its code but no longer names its file or
    module, which is all ``spawn`` reads.  A model's own processes are
    started from the workers, whose main is unaffected.
    """
    main = sys.modules.get("__main__")
    if main is None:
        return
    main.__dict__.pop("__file__", None)
    if getattr(main, "__spec__", None) is not None:
        main.__spec__ = None
