"""ProcessPool: real worker processes that crash, hang and come back."""

from __future__ import annotations

import asyncio
import json
import pickle
import signal
import subprocess
import sys
import time

import pytest

from deepaas.engine.process_pool.pool import ProcessPool
from deepaas.exceptions import CallTimeout, ModelLoadError, QueueFull, WorkerCrashed
from deepaas.model.wrapper import RawArguments
from tests.conftest import ROOT, spec, subprocess_env
from tests.processes import pid_exists

pytestmark = pytest.mark.slow

#: No call in these tests may take longer than this: nothing hangs.
BOUND = 20.0


def args(**values: object) -> RawArguments:
    return RawArguments(pairs=[(k, str(v)) for k, v in values.items()])


async def predict(pool: ProcessPool, **values: object) -> dict:
    outcome = await asyncio.wait_for(pool.predict(args(**values), None), BOUND)
    return json.loads(outcome.body)["predictions"]


async def until(condition, timeout: float = BOUND) -> None:
    """Poll ``condition`` on the event loop instead of guessing a sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_exists(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if pid_exists(p)]


async def test_stop_leaves_no_worker_behind(installed_models):
    pool = ProcessPool(spec("crashy"), size=2)
    await pool.start()
    pids = [p for p in pool.worker_pids() if p]
    assert len(pids) == 2 and all(pid_exists(p) for p in pids)
    await pool.stop()
    assert wait_gone(pids) == []


@pytest.mark.parametrize(
    ("how", "cause"),
    [
        ("exit", "it exited with code 3"),
        ("kill", "killed by SIGKILL (often: killed for using too much memory)"),
        ("segfault", "killed by SIGSEGV"),
    ],
)
async def test_a_crash_fails_its_call_and_the_worker_comes_back(
    installed_models, how, cause
):
    pool = ProcessPool(spec("crashy"), size=1)
    await pool.start()
    try:
        first = (await predict(pool))["pid"]
        with pytest.raises(WorkerCrashed) as info:
            await predict(pool, how=how)
        assert cause in info.value.message
        assert "model 'crashy'" in info.value.message
        # The very next call waits for the replacement and succeeds.
        started = time.monotonic()
        second = (await predict(pool))["pid"]
        assert second != first and time.monotonic() - started < 10
        assert not pid_exists(first)
        assert pool.status()["restarts"] == 1
    finally:
        await pool.stop()


async def test_a_call_that_cannot_be_sent_leaves_its_worker_free(installed_models):
    pool = ProcessPool(spec("crashy"), size=1)
    await pool.start()
    try:
        pid = (await predict(pool))["pid"]
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            await pool.call("predict", lambda: None, None)  # cannot be pickled
        # The one worker took no call: it answers the next one at once.
        assert (await predict(pool))["pid"] == pid
        assert pool.status()["busy"] == 0
    finally:
        await pool.stop()


async def test_timeout_answers_and_recycles_the_worker(installed_models):
    pool = ProcessPool(spec("crashy"), size=1, call_timeout=0.5)
    await pool.start()
    try:
        stuck = (await predict(pool))["pid"]
        started = time.monotonic()
        with pytest.raises(CallTimeout, match="did not answer within 0.5 s"):
            await predict(pool, how="sleep", seconds=60)
        assert time.monotonic() - started < 2
        assert (await predict(pool))["pid"] != stuck
        assert wait_gone([stuck]) == []
        assert "--predict-timeout" in pool.status()["last_error"]
    finally:
        await pool.stop()


async def test_other_workers_keep_answering_during_a_crash(installed_models):
    pool = ProcessPool(spec("crashy"), size=2)
    await pool.start()
    try:
        crash = asyncio.ensure_future(predict(pool, how="sleep", seconds=0.3))
        await until(lambda: pool.status()["busy"] == 1)
        # The sleeping worker is busy; this one answers meanwhile.
        results = await asyncio.gather(
            predict(pool, how="exit"), predict(pool), return_exceptions=True
        )
        assert any(isinstance(r, WorkerCrashed) for r in results)
        assert any(isinstance(r, dict) for r in results)
        assert isinstance(await crash, dict)
    finally:
        await pool.stop()


async def test_queue_is_bounded(installed_models, tmp_path):
    pool = ProcessPool(spec("gate"), size=1, max_queue=1)
    gate = tmp_path / "open"  # each call waits until it exists
    await pool.start()
    try:
        busy = asyncio.ensure_future(predict(pool, gate=gate))
        await until(lambda: pool.status()["busy"] == 1)
        queued = asyncio.ensure_future(predict(pool, gate=gate))
        await until(lambda: pool.status()["queued"] == 1)
        with pytest.raises(QueueFull, match="--max-queue"):
            await predict(pool, gate=gate)
        gate.touch()
        assert isinstance(await busy, dict) and isinstance(await queued, dict)
    finally:
        await pool.stop()


async def test_a_failing_start_reports_why_and_leaves_nothing(installed_models):
    pool = ProcessPool(spec("warm-fails"), size=2)
    with pytest.raises(ModelLoadError, match="weights not found"):
        await pool.start()
    assert wait_gone([p for p in pool.worker_pids() if p]) == []


async def test_waiters_fail_when_the_restart_fails(
    installed_models, tmp_path, monkeypatch
):
    marker = tmp_path / "fail"
    monkeypatch.setenv("DEEPAAS_TEST_FAIL_FILE", str(marker))
    pool = ProcessPool(spec("fails-on-restart"), size=1)
    await pool.start()
    try:
        marker.write_text("")
        with pytest.raises(WorkerCrashed):
            await predict(pool, how="exit")
        # Nobody waits forever for a worker that cannot come back.
        with pytest.raises(WorkerCrashed, match="the weights went missing"):
            await predict(pool)
        assert pool.status()["ready"] == 0
        # Once the cause is gone, the backoff loop brings the worker back.
        marker.unlink()
        deadline = time.monotonic() + BOUND
        while pool.status()["ready"] == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert (await predict(pool))["pid"]
    finally:
        await pool.stop()


def test_workers_die_with_a_killed_server(installed_models, tmp_path):
    """Even SIGKILL of the API process leaves no worker running."""
    script = (
        "import asyncio, sys\n"
        "from deepaas.engine.process_pool.pool import ProcessPool\n"
        "from tests.conftest import spec\n"
        "async def main():\n"
        "    pool = ProcessPool(spec('crashy'), size=2)\n"
        "    await pool.start()\n"
        "    print(*pool.worker_pids(), flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
        env=subprocess_env(installed_models), cwd=ROOT,
    )
    try:
        pids = [int(p) for p in server.stdout.readline().split()]
        assert len(pids) == 2 and all(pid_exists(p) for p in pids)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        server.stdout.close()
    assert wait_gone(pids) == []
