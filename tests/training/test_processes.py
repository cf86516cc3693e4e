"""Process groups and server locks, with real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from deepaas.training._processes import (
    ServerLock,
    group_members,
    server_alive,
    stop_group,
)

pytestmark = pytest.mark.slow

HOLD_LOCK = """
import sys, time
from pathlib import Path
from deepaas.training._processes import ServerLock
ServerLock(Path(sys.argv[1]), "other").acquire()
print("locked", flush=True)
time.sleep(120)
"""

FAMILY = """
import subprocess, sys, time, signal
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
time.sleep(120)
"""


def test_a_lock_tells_a_live_server_from_a_dead_one(tmp_path):
    mine = ServerLock(tmp_path, "mine")
    mine.acquire()
    assert server_alive(tmp_path, "mine")
    assert not server_alive(tmp_path, "nobody")

    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        assert server_alive(tmp_path, "other")
    finally:
        holder.kill()
        holder.wait()
    assert not server_alive(tmp_path, "other")
    assert not (tmp_path / "other.lock").exists()

    mine.release()
    assert not server_alive(tmp_path, "mine")


def _start_family(kind: str) -> tuple[subprocess.Popen[str], int]:
    parent = subprocess.Popen([sys.executable, "-c", FAMILY, kind],
                              stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    return parent, child


async def test_stopping_a_group_ends_every_member():
    parent, child = _start_family("polite")
    assert sorted(group_members(parent.pid)) == sorted([parent.pid, child])
    killed = await stop_group(parent.pid, deadline=time.monotonic() + 5)
    assert not killed
    parent.wait()
    assert group_members(parent.pid) == []


async def test_a_group_that_ignores_sigterm_is_killed_at_the_deadline():
    parent, child = _start_family("stubborn")
    began = time.monotonic()
    killed = await stop_group(parent.pid, deadline=time.monotonic() + 0.3)
    assert killed
    assert time.monotonic() - began < 5
    assert parent.wait(5) == -signal.SIGKILL
    assert group_members(parent.pid) == []


async def test_an_empty_group_needs_nothing():
    proc = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    proc.wait()
    assert group_members(proc.pid) == []
    assert not await stop_group(proc.pid, deadline=time.monotonic() + 1)
