"""Worker restarts back off 0.25 s doubling to 30 s; warm-ups end at shutdown.

docs/engine.md promises both: a crashing model is restarted after 0.25 s,
then 0.5 s, 1 s... at most 30 s apart (afresh after 60 s of health), and
workers still warming when the server stops are killed, not waited for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

import pytest

from deepaas.engine.process_pool.pool import ProcessPool
from deepaas.exceptions import ModelLoadError, WorkerCrashed
from deepaas.model.wrapper import RawArguments
from tests.conftest import spec
from tests.processes import pid_running

BOUND = 20.0
DELAY = re.compile(r"restarting worker 0 in (\d+\.\d+) s")


def announced_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    return [float(m.group(1)) for m in DELAY.finditer(caplog.text)]


async def poll(condition, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_the_restart_delay_doubles_from_a_quarter_second_to_30_s(
    installed_models, caplog
):
    """The pool's own restart loop announces each delay before it waits."""
    caplog.set_level(logging.INFO, "deepaas.engine.workers")
    pool = ProcessPool(spec("crashy"), size=1)  # never started: no process
    worker = pool._workers[0]
    for failures in range(1, 12):
        worker.failures = failures
        caplog.clear()
        restart = asyncio.ensure_future(pool._restart(worker))
        await poll(lambda: bool(announced_delays(caplog)))
        restart.cancel()  # during its wait, before any spawn
        with pytest.raises(asyncio.CancelledError):
            await restart
        assert worker.restarts == 0
        expected = min(30.0, 0.25 * 2 ** (failures - 1))
        assert announced_delays(caplog) == [expected], failures
    # 0.25, 0.5, 1, 2, 4, 8, 16, then the 30 s ceiling from the 8th failure on.


@pytest.mark.slow
async def test_real_crashes_back_off_and_60_s_of_health_start_afresh(
    installed_models, caplog
):
    caplog.set_level(logging.INFO, "deepaas.engine.workers")
    pool = ProcessPool(spec("crashy"), size=1)
    await pool.start()
    try:

        async def crash_and_wait_for_the_restart() -> None:
            restarts = pool.status()["restarts"]
            with pytest.raises(WorkerCrashed):
                await asyncio.wait_for(
                    pool.predict(RawArguments(pairs=[("how", "exit")]), None), BOUND
                )
            await poll(
                lambda: (
                    pool.status()["restarts"] > restarts and pool.status()["ready"] == 1
                )
            )

        await crash_and_wait_for_the_restart()
        await crash_and_wait_for_the_restart()
        assert announced_delays(caplog) == [0.25, 0.5]
        # As if the replacement had then run for a minute without trouble.
        pool._workers[0].ready_since = time.monotonic() - 61
        await crash_and_wait_for_the_restart()
        assert announced_delays(caplog) == [0.25, 0.5, 0.25]
        outcome = await pool.predict(RawArguments(pairs=[]), None)
        assert "pid" in json.loads(outcome.body)["predictions"]
    finally:
        await pool.stop()


@pytest.mark.slow
async def test_workers_still_warming_at_shutdown_are_killed(
    installed_models, monkeypatch
):
    monkeypatch.setenv("DEEPAAS_TEST_WARM_SECONDS", "60")
    pool = ProcessPool(spec("slow-warm"), size=2)
    starting = asyncio.ensure_future(pool.start())
    await poll(lambda: pool.status()["warming"] == 2)
    pids = [p for p in pool.worker_pids() if p]
    assert len(pids) == 2
    started = time.monotonic()
    await pool.stop()  # waits up to 10 s for workers that finish on their own
    assert time.monotonic() - started < 5
    await poll(lambda: not any(pid_running(p) for p in pids), timeout=5)
    with pytest.raises(ModelLoadError):
        await starting
