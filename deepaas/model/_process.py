"""Process helpers shared by every kind of worker (API, batch, training)."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


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
    return f"it exited with code {exitcode}"


def prepare_worker_process(
    env: dict[str, str], log_level: int, *, ignore_sigterm: bool = False
) -> None:
    """Set up a freshly spawned worker before it imports any model.

    The environment comes first (``CUDA_VISIBLE_DEVICES`` must be set before
    a framework reads it).  Ctrl-C reaches the whole process group, but the
    parent decides when workers stop, so they ignore SIGINT (and SIGTERM,
    when the parent handles that too) and finish the call in hand.
    """
    os.environ.update(env)
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s worker[{os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )


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
