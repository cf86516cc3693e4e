"""Process checks for tests that watch workers and trainings come and go."""

from __future__ import annotations

import os


def pid_exists(pid: int) -> bool:
    """Whether ``pid`` names a process, a zombie not yet reaped included."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def pid_running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left to a non-reaping init does not)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False
