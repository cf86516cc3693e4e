"""Process checks for tests that watch workers and trainings come and go."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


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


def wait_for(
    predicate: Callable[[], T | None],
    what: str,
    timeout: float = 30,
    interval: float = 0.05,
) -> T:
    """Poll ``predicate`` until it answers something true, and answer that.

    Tests wait for another process (a server, a worker, a SLURM job) this
    way rather than sleeping a fixed time; ``what`` names the wait in the
    failure when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


async def poll(
    check: Callable[[], Awaitable[T | None]],
    what: str,
    timeout: float = 30,
    interval: float = 0.05,
) -> T:
    """:func:`wait_for` for a test that runs in the event loop: awaits ``check``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(interval)


async def wait_for_file(path: Path, timeout: float = 30) -> str:
    """What another process writes to ``path``, once the file is there."""

    async def written() -> bool:
        return path.exists()

    await poll(written, f"{path} to appear", timeout)
    return path.read_text()
