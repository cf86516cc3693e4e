"""The guard: waits for a worker to end, then stops what the worker started.

:func:`deepaas.engine.processes.prologue.contain_children` forks the guard
from a freshly spawned worker, and the fork runs this file as a program of
its own (``python -I -S guard.py WORKER_PID GRACE``): a fresh interpreter
without site-packages holds about 9 MB, where the forked copy of the
worker held over 20 MB for as long as the worker lived.  So this file
imports nothing but the standard library, and nothing of deepaas.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time


def wait_for_parent(parent: int) -> None:
    """Block until the process ``parent`` (this process's parent) has ended."""
    try:
        fd = os.pidfd_open(parent)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # a kernel without pidfds: poll
        while os.getppid() == parent:
            time.sleep(0.2)
        return
    if os.getppid() != parent:
        return  # it ended before the pidfd was opened (and the pid was reused)
    select.select([fd], [], [])  # readable once the process has exited


def stop_group(pgid: int, grace: float) -> None:
    """SIGTERM the group, then SIGKILL what is left after ``grace`` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        time.sleep(0.02)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def name_process(name: str) -> None:
    """Show ``name`` in ps/top (the process's ``comm``)."""
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name)
    except OSError:
        pass


def main(argv: list[str]) -> None:
    """The guard's whole life: wait for the worker, then stop its group."""
    worker, grace = int(argv[1]), float(argv[2])
    name_process("deepaas-guard")
    wait_for_parent(worker)
    stop_group(worker, grace)


if __name__ == "__main__":
    main(sys.argv)
