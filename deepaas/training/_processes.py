"""Process groups and server liveness: what cancelling and restarting rely on.

Every training runs in its own session, so its process group holds the
training process and every process the model started (unless one of them
starts a session of its own).  Stopping a training signals the whole group.

Each server holds an exclusive ``flock`` on ``servers/<id>.lock`` in the
state directory for as long as it lives.  The kernel drops that lock when
the process dies, however it dies (SIGKILL included), and a recycled pid
cannot fake it, so another server can tell a dead owner from a live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import time
from pathlib import Path
from typing import Any

_POLL = 0.05


def _proc_stat(pid: str) -> tuple[str, int] | None:
    """State letter and process group of ``pid`` from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return fields[0].decode(), int(fields[2])
    except (IndexError, ValueError):
        return None


def group_members(pgid: int) -> list[int]:
    """Live processes of the group ``pgid`` (zombies, already dead, excluded)."""
    if os.path.isdir("/proc/self"):
        members = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = _proc_stat(entry)
                if stat is not None and stat[1] == pgid and stat[0] not in "ZX":
                    members.append(int(entry))
        return members
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return []
    return [pgid]


def signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to the group; to the process alone if it has none yet.

    A training process makes its group first thing; signalled before that,
    it has started nothing else, so signalling it alone is enough.
    """
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pgid, signum)
    except PermissionError:
        pass


async def stop_group(pgid: int, *, deadline: float) -> bool:
    """SIGTERM the group, wait until ``deadline`` (monotonic), then SIGKILL it.

    Answers whether the group had to be killed.
    """
    if not group_members(pgid):
        return False
    signal_group(pgid, signal.SIGTERM)
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return False
        await asyncio.sleep(_POLL)
    killed = False
    for _ in range(100):
        if not group_members(pgid):
            break
        signal_group(pgid, signal.SIGKILL)
        killed = True
        await asyncio.sleep(_POLL)
    return killed


class ServerLock:
    """This server's claim on a state directory, held while the process lives."""

    def __init__(self, directory: Path, server_id: str) -> None:
        self.path = directory / f"{server_id}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; the file records who holds it, for people reading it."""
        # 0700 and 0600, as everything in the state directory
        # (docs/security.md): the file names this host and process.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, f"{os.uname().nodename} {os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Give the lock up and remove its file."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


def server_alive(directory: Path, server_id: str) -> bool:
    """Whether the server ``server_id`` still holds its lock in ``directory``."""
    path = directory / f"{server_id}.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        # Its owner is gone: tidy the stale file while holding the lock.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return False
    finally:
        os.close(fd)


async def wait_for_exit(process: Any) -> None:
    """Wait, without a thread, until the multiprocessing ``process`` exits.

    A pidfd reports the exit even when a process the model forked still
    holds the multiprocessing sentinel open; the sentinel is the fallback.
    """
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()
    try:
        fd = os.pidfd_open(process.pid)
        owned = True
    except (AttributeError, OSError):
        fd, owned = process.sentinel, False

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, on_exit)
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        if owned:
            os.close(fd)
