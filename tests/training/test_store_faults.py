"""A locked, a full and a corrupted training store, with real servers and disks.

The lock is held by a second process (``BEGIN EXCLUSIVE``), the full disk
is a small tmpfs (mounting needs root: the tests skip without it), the
corrupted store is a file of garbage bytes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deepaas.api import create_app
from deepaas.engine.build import build_executors
from deepaas.training import TrainingService
from deepaas.training.backends.local import LocalBackend
from tests.conftest import spec, subprocess_env
from tests.processes import poll
from tests.servers import RunningServer
from tests.training.test_restart import serve

pytestmark = pytest.mark.slow

TRAIN = "/v2/models/trainer/train/"

HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


def fetch(
    method: str, url: str, timeout: float = 30
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one request (errors included)."""
    request = urllib.request.Request(
        url, method=method, data=b"" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@contextlib.contextmanager
def store_locked(database: Path) -> Iterator[None]:
    """Another process holds ``BEGIN EXCLUSIVE`` on ``database`` meanwhile."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(database)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == b"locked\n"
        yield
    finally:
        if holder.stdin is not None:
            holder.stdin.close()  # end of file: it rolls back and exits
        holder.wait(10)


@pytest.mark.slow
def test_a_locked_store_answers_503_quickly_and_health_at_once(
    start_server: Callable[..., RunningServer], installed_models: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    server, base = serve(start_server, state, installed_models)
    try:
        assert fetch("POST", f"{base}{TRAIN}?seconds=0")[0] == 200
        with store_locked(state / "trainings.sqlite"), \
                concurrent.futures.ThreadPoolExecutor(1) as pool:
            began = time.monotonic()
            posting = pool.submit(fetch, "POST", f"{base}{TRAIN}?seconds=0")
            health = []
            while not posting.done():
                start = time.monotonic()
                status, _, _ = fetch("GET", f"{base}/health")
                health.append(time.monotonic() - start)
                assert status == 200
                time.sleep(0.05)
            status, headers, body = posting.result()
            took = time.monotonic() - began
        assert status == 503, body
        assert headers["Retry-After"].isdigit()
        assert b"locked by another process" in body or b"did not answer" in body
        assert took < 8, took
        assert len(health) > 10 and max(health) < 0.1, health

        # Once the lock goes, everything works again.
        status, _, body = fetch("POST", f"{base}{TRAIN}?seconds=0")
        assert status == 200, body
    finally:
        assert server.terminate() == 0


@contextlib.contextmanager
def small_disk(directory: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``directory``; skips where none can be."""
    directory.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True, text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path) -> Path:
    """Write a file into ``directory`` until its disk is full."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


async def test_a_full_disk_refuses_with_507_and_every_record_ends_true(
    installed_models: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        state = disk / "state"
        service = TrainingService(
            state, backend=LocalBackend(max_trainings=1, cancel_grace=1)
        )
        executors = build_executors([spec("trainer")], workers=0)
        client = await aiohttp_client(create_app(executors, trainings=service))
        record = tmp_path / "record"
        record.mkdir()
        resp = await client.post(
            TRAIN, params={"seconds": "1", "record": str(record)}
        )
        assert resp.status == 200, await resp.text()
        uuid = (await resp.json())["uuid"]
        filler = fill(disk)

        # train() returns on a full disk: its --max-trainings slot is free
        # again (no 503 "holds 1 unfinished"), and every answer says why.
        async def ended() -> bool:
            return any(record.glob("*.end"))

        await poll(ended, "train() to return", 30)

        async def refused() -> dict[str, Any] | None:
            resp = await client.post(TRAIN, params={"seconds": "0"})
            body: dict[str, Any] = await resp.json()
            assert resp.status in (503, 507), body
            assert resp.headers["Retry-After"].isdigit()
            return body if resp.status == 507 else None

        body = await poll(refused, "the slot to be free", 30)
        assert "disk is full" in body["message"]
        for method in ("GET", "DELETE"):
            resp = await client.request(method, f"{TRAIN}{uuid}")
            text = await resp.text()
            assert resp.status in (200, 503, 507), text
            assert "another server" not in text
        filler.unlink()  # space returns

        def recorded() -> tuple[str, str]:
            with sqlite3.connect(state / "trainings.sqlite") as conn:
                row = conn.execute(
                    "SELECT status, message FROM trainings WHERE uuid = ?", (uuid,)
                ).fetchone()
            return row

        async def settled() -> tuple[str, str] | None:
            row = recorded()
            return row if row[0] != "running" else None

        status, message = await poll(settled, "the record to be written", 30)
        assert status == "error" and "could not be written" in message
        body = await (await client.get(f"{TRAIN}{uuid}")).json()
        assert (body["status"], body["message"]) == (status, message)
        again = await client.post(TRAIN, params={"seconds": "0"})
        assert again.status == 200, await again.text()
        await client.close()


def test_a_garbage_store_stops_start_up_with_one_line(
    installed_models: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "trainings.sqlite").write_bytes(b"not a database " * 1000)
    run = subprocess.run(
        [sys.executable, "-m", "deepaas.cmd.run", "--listen-port", "0",
         "--state-dir", str(state), "--model-name", "trainer", "--workers", "0"],
        env=subprocess_env(installed_models), capture_output=True, text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, run.stderr
    assert "trainings.sqlite" in errors[0] and "file is not a database" in errors[0]
    assert "move it away" in errors[0]


async def test_a_store_corrupted_while_serving_answers_503_and_ready_says_why(
    installed_models: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    service = TrainingService(state)
    executors = build_executors([spec("trainer")], workers=0)
    client = await aiohttp_client(create_app(executors, trainings=service))
    assert (await client.get("/ready")).status == 200
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            (state / f"trainings.sqlite{suffix}").unlink()
    (state / "trainings.sqlite").write_bytes(b"garbage " * 4096)

    listing = await client.get(TRAIN)
    body = await listing.json()
    assert listing.status == 503, body
    assert "file is not a database" in body["message"]
    started = await client.post(TRAIN, params={"seconds": "0"})
    assert started.status == 503, await started.text()
    ready = await client.get("/ready")
    assert ready.status == 503
    assert "file is not a database" in (await ready.json())["trainings"]
    predicted = await client.post("/v2/models/trainer/predict/")
    assert predicted.status == 200, await predicted.text()
