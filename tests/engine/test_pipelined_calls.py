"""Short calls wait in the worker's socket; slow ones wait in the pool.

A worker answers in the order it receives, so the pool may send a worker
whose calls are short several at once.  What a user sees: more requests
accepted at once for short calls, every caller still gets its own answer,
and a worker that dies or times out fails only the call it was running.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from deepaas.engine.process_pool._dispatch import PIPELINE_DEPTH
from deepaas.engine.process_pool.pool import ProcessPool
from deepaas.exceptions import CallTimeout, QueueFull, WorkerCrashed
from tests.conftest import spec
from tests.engine.test_workers import predict

pytestmark = pytest.mark.slow


async def settle(pool: ProcessPool, calls: int = 10, **values: object) -> int:
    """Make a few calls, so that the pool knows how long they take."""
    pid = 0
    for _ in range(calls):
        pid = (await predict(pool, **values))["pid"]
    return pid


async def outcomes(*calls) -> list:
    return await asyncio.gather(*calls, return_exceptions=True)


async def test_every_caller_gets_its_own_answer(installed_models):
    pool = ProcessPool(spec("crashy"), size=2)
    await pool.start()
    try:
        await settle(pool)
        tags = [f"call-{i}" for i in range(140)]
        answers = await outcomes(*(predict(pool, tag=t) for t in tags))
        assert [a["tag"] for a in answers] == tags
        assert pool.status()["busy"] == 0 and pool.status()["queued"] == 0
    finally:
        await pool.stop()


async def test_short_calls_fill_the_worker_socket_before_the_queue(installed_models):
    pool = ProcessPool(spec("crashy"), size=1, max_queue=2)
    await pool.start()
    try:
        await settle(pool)
        # The one worker takes PIPELINE_DEPTH short calls, the queue 2 more.
        accepted = PIPELINE_DEPTH + 2
        answers = await outcomes(*(predict(pool) for _ in range(accepted + 3)))
        refused = [a for a in answers if isinstance(a, QueueFull)]
        assert len(refused) == 3
        assert all(isinstance(a, dict) for a in answers[:accepted])
    finally:
        await pool.stop()


async def test_slow_calls_wait_in_the_pool(installed_models):
    pool = ProcessPool(spec("crashy"), size=1, max_queue=2)
    await pool.start()
    try:
        await settle(pool, calls=3, how="sleep", seconds=0.05)
        # One runs, two wait in the queue, the rest are refused at once.
        answers = await outcomes(
            *(predict(pool, how="sleep", seconds=0.05) for _ in range(6))
        )
        assert sum(isinstance(a, QueueFull) for a in answers) == 3
    finally:
        await pool.stop()


async def test_nothing_waits_behind_a_call_that_turns_out_slow(installed_models):
    pool = ProcessPool(spec("crashy"), size=2)
    await pool.start()
    try:
        await settle(pool, calls=20)
        slow = asyncio.ensure_future(predict(pool, how="sleep", seconds=2.0))
        await asyncio.sleep(0.2)  # it runs, in one worker, for a while
        started = time.monotonic()
        answers = await outcomes(*(predict(pool, tag=f"t{i}") for i in range(12)))
        # All answered by the other worker, none stuck behind the slow one.
        assert time.monotonic() - started < 1.5
        assert [a["tag"] for a in answers] == [f"t{i}" for i in range(12)]
        assert not slow.done()
        await slow
    finally:
        await pool.stop()


async def test_a_crash_fails_only_the_call_it_was_running(installed_models):
    pool = ProcessPool(spec("crashy"), size=1)
    await pool.start()
    try:
        first = await settle(pool)
        crash = predict(pool, how="exit")
        behind = [predict(pool, tag=f"after-{i}") for i in range(5)]
        answers = await outcomes(crash, *behind)
        assert isinstance(answers[0], WorkerCrashed)
        assert "it exited with code 3" in answers[0].message
        # The calls behind it never started: they ran on the new worker.
        assert [a["tag"] for a in answers[1:]] == [f"after-{i}" for i in range(5)]
        assert {a["pid"] for a in answers[1:]} != {first}
        assert pool.status()["restarts"] == 1
    finally:
        await pool.stop()


@pytest.mark.slow
async def test_a_timeout_fails_only_the_call_that_ran_too_long(installed_models):
    pool = ProcessPool(spec("crashy"), size=1, call_timeout=1.0)
    await pool.start()
    try:
        await settle(pool)
        stuck = predict(pool, how="sleep", seconds=30)
        behind = [predict(pool, tag=f"after-{i}") for i in range(4)]
        answers = await outcomes(stuck, *behind)
        assert isinstance(answers[0], CallTimeout)
        # Each call is timed from when it starts: the ones that waited
        # behind the stuck call were not counted as late.
        assert [a["tag"] for a in answers[1:]] == [f"after-{i}" for i in range(4)]
    finally:
        await pool.stop()
