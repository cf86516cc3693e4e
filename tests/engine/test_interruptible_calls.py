"""Calls their caller may stop: a cancelled prediction job frees its worker.

An ordinary call whose client goes away runs to its end (restarting a
worker costs a warm-up).  A prediction job is different: it may run for
hours, and its DELETE says the work is no longer wanted.  Its call runs on
a free worker, nothing waits behind it, and cancelling it kills the worker,
which comes back at once.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from deepaas.engine.process_pool.pool import ProcessPool
from deepaas.exceptions import WorkerCrashed
from tests.conftest import spec
from tests.engine.test_pipelined_calls import settle
from tests.engine.test_workers import args, predict, until
from tests.processes import pid_exists

pytestmark = pytest.mark.slow


async def test_cancelling_a_running_interruptible_call_restarts_its_worker(
    installed_models,
):
    pool = ProcessPool(spec("crashy"), size=1)
    await pool.start()
    try:
        first = await settle(pool, calls=3)
        job = asyncio.ensure_future(
            pool.predict_interruptible(args(how="sleep", seconds=60), None)
        )
        await until(lambda: pool.status()["busy"] == 1)
        await asyncio.sleep(0.2)  # it runs in the worker now
        job.cancel()
        started = time.monotonic()
        # The worker was stopped: the next call is answered by its
        # replacement, long before the cancelled call would have ended.
        answer = await predict(pool)
        assert time.monotonic() - started < 15
        assert answer["pid"] != first
        assert not pid_exists(first)
        assert pool.stats.restarts == {"cancelled": 1}
    finally:
        await pool.stop()


async def test_an_ordinary_call_left_by_its_caller_runs_to_its_end(installed_models):
    pool = ProcessPool(spec("crashy"), size=1)
    await pool.start()
    try:
        first = await settle(pool, calls=3)
        call = asyncio.ensure_future(predict(pool, how="sleep", seconds=0.5))
        await until(lambda: pool.status()["busy"] == 1)
        call.cancel()
        assert (await predict(pool))["pid"] == first  # same worker, after it
        assert not pool.stats.restarts
    finally:
        await pool.stop()


async def test_nothing_waits_behind_an_interruptible_call(installed_models):
    pool = ProcessPool(spec("crashy"), size=2)
    await pool.start()
    try:
        await settle(pool, calls=20)
        job = asyncio.ensure_future(
            pool.predict_interruptible(args(how="sleep", seconds=2.0), None)
        )
        await asyncio.sleep(0)  # sent, and only just started
        started = time.monotonic()
        answers = await asyncio.gather(*(predict(pool, tag=f"t{i}") for i in range(12)))
        assert time.monotonic() - started < 1.5  # all by the other worker
        assert [a["tag"] for a in answers] == [f"t{i}" for i in range(12)]
        assert not job.done()
        assert (await job).content_type == "application/json"
    finally:
        await pool.stop()


async def test_a_crash_during_an_interruptible_call_is_still_reported(
    installed_models,
):
    pool = ProcessPool(spec("crashy"), size=1)
    await pool.start()
    try:
        try:
            await pool.predict_interruptible(args(how="exit"), None)
        except WorkerCrashed as exc:
            assert "it exited with code 3" in exc.message
        else:
            raise AssertionError("the crash was not reported")
        assert pool.stats.restarts == {"exit": 1}
    finally:
        await pool.stop()


async def test_an_interruptible_call_is_not_starved_by_short_ones(installed_models):
    # One worker, kept busy by a stream of short calls that could always
    # take a place in its socket: the job, queued first, must not wait for
    # the stream to end.
    pool = ProcessPool(spec("crashy"), size=1)
    await pool.start()
    try:
        await settle(pool, calls=20)
        streaming = True

        async def stream() -> int:
            calls = 0
            while streaming:
                await predict(pool)
                calls += 1
            return calls

        streams = [asyncio.ensure_future(stream()) for _ in range(24)]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        outcome = await asyncio.wait_for(
            pool.predict_interruptible(args(tag="job"), None), 10
        )
        took = time.monotonic() - started
        streaming = False
        served = await asyncio.gather(*streams)
        assert b'"job"' in outcome.body
        assert took < 2.0, took
        assert sum(served) > 100  # the stream did keep the worker busy
    finally:
        await pool.stop()
