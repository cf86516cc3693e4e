"""Process helpers shared by every kind of worker (API, batch, training)."""

from __future__ import annotations

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
