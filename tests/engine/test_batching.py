"""Dynamic batching: concurrent requests grouped, each with its own answer."""

from __future__ import annotations

import asyncio
import json

import pytest

from deepaas.engine.in_process import InProcessExecutor
from deepaas.engine.process_pool.pool import ProcessPool
from deepaas.exceptions import ArgumentsInvalid, ModelError
from deepaas.model.wrapper import RawArguments
from tests.conftest import spec

BOUND = 20.0


def args(**values: object) -> RawArguments:
    return RawArguments(pairs=[(k, str(v)) for k, v in values.items()])


async def ask(executor, **values: object):
    outcome = await asyncio.wait_for(executor.predict(args(**values), None), BOUND)
    return json.loads(outcome.body)["predictions"]


@pytest.fixture(params=["processes", "in-process"])
async def batched(request, installed_models):
    if request.param == "processes":
        executor = ProcessPool(spec("batched"), size=1)
    else:
        executor = InProcessExecutor(spec("batched"))
    await executor.start()
    yield executor
    await executor.stop()


@pytest.mark.slow
async def test_concurrent_requests_are_grouped(batched):
    answers = await asyncio.gather(*(ask(batched, value=f"v{i}") for i in range(8)))
    # Each caller gets its own answer, in its own order.
    assert [a["value"] for a in answers] == [f"v{i}" for i in range(8)]
    sizes = [a["batch"] for a in answers]
    # max_batch_size is 4 and the 8 requests arrive together: two full batches.
    assert sizes == [4] * 8


@pytest.mark.slow
async def test_a_lone_request_does_not_wait_for_the_batch_timeout(batched):
    loop = asyncio.get_running_loop()
    for value in ("alone", "alone again"):
        started = loop.time()
        answer = await ask(batched, value=value)
        assert answer == {"value": value, "n": 0, "batch": 1}
        # batch_timeout is 2 s; the call itself takes 0.05 s.
        assert loop.time() - started < 1.5


@pytest.mark.slow
async def test_under_concurrent_traffic_a_batch_waits_for_company(batched):
    # Concurrent traffic first: a full batch.
    answers = await asyncio.gather(*(ask(batched, value=f"v{i}") for i in range(4)))
    assert [a["batch"] for a in answers] == [4] * 4
    # Then two requests 0.2 s apart: the first waits (up to 2 s) for the second.
    first = asyncio.ensure_future(ask(batched, value="early"))
    await asyncio.sleep(0.2)
    second = await ask(batched, value="late")
    assert (await first)["batch"] == second["batch"] == 2


@pytest.mark.slow
async def test_each_caller_gets_its_own_error(batched):
    results = await asyncio.gather(
        ask(batched, value="ok1"),
        ask(batched, value="boom"),
        ask(batched, value="ok2", n="not a number"),
        ask(batched, value="ok3"),
        return_exceptions=True,
    )
    assert results[0]["value"] == "ok1" and results[3]["value"] == "ok3"
    assert isinstance(results[1], ModelError)
    assert "bad value 'boom'" in results[1].message
    assert isinstance(results[2], ArgumentsInvalid)
    assert "n" in results[2].errors
    # The invalid request never reached predict_batch: a batch of three.
    assert results[0]["batch"] == 3


@pytest.mark.slow
async def test_batching_is_reported_in_the_description(batched):
    assert batched.description.batching == {"max_batch_size": 4, "batch_timeout": 2.0}
