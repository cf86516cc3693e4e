"""The API while its models warm in the background (deepaas.api.startup).

Real worker processes on a real loopback server: the probes answer at once,
a prediction waits for the warm worker, the waiting requests are bounded,
and a warm-up that fails answers its waiters 503 with the reason.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from deepaas.api import create_app
from deepaas.api.startup import Startup
from deepaas.engine.build import build_executors
from tests.conftest import spec

pytestmark = pytest.mark.slow

TIMEOUT = aiohttp.ClientTimeout(total=30)


async def serve(aiohttp_client, model: str, *, max_waiting: int = 64):
    executors = build_executors([spec(model)], workers=1)
    startup = Startup(executors, max_waiting=max_waiting)
    client = await aiohttp_client(create_app(executors, startup=startup))
    return client, startup


async def get(client, path: str) -> tuple[int, dict]:
    resp = await client.get(path, timeout=TIMEOUT)
    return resp.status, await resp.json()


async def predict(client, model: str) -> tuple[int, dict]:
    resp = await client.post(f"/v2/models/{model}/predict/", timeout=TIMEOUT)
    return resp.status, await resp.json()


async def test_probes_answer_and_a_prediction_waits_while_warming(
    installed_models, aiohttp_client, monkeypatch
):
    monkeypatch.setenv("DEEPAAS_TEST_WARM_SECONDS", "1")
    client, startup = await serve(aiohttp_client, "slow-warm")

    status, body = await get(client, "/health")
    assert (status, body["status"]) == (200, "alive")
    assert body["startup"] == "starting: warming slow-warm"
    assert body["models"]["slow-warm"]["ready"] == 0
    status, body = await get(client, "/ready")
    assert (status, body["status"]) == (503, "starting: warming slow-warm")
    assert (await get(client, "/v2/"))[0] == 200  # needs no model: at once

    listing = asyncio.ensure_future(get(client, "/v2/models/"))
    status, body = await predict(client, "slow-warm")
    assert status == 200, body
    assert startup.started
    status, body = await listing
    assert (status, body["models"][0]["name"]) == (200, "slow-warm")
    status, body = await get(client, "/ready")
    assert (status, body["status"]) == (200, "ready")
    assert "startup" not in (await get(client, "/health"))[1]


async def test_requests_beyond_the_bound_are_answered_503_while_warming(
    installed_models, aiohttp_client, monkeypatch
):
    monkeypatch.setenv("DEEPAAS_TEST_WARM_SECONDS", "2")
    client, _ = await serve(aiohttp_client, "slow-warm", max_waiting=1)
    first = asyncio.ensure_future(predict(client, "slow-warm"))
    await asyncio.sleep(0.3)  # the first one is waiting
    status, body = await predict(client, "slow-warm")
    assert status == 503, body
    assert "waiting for the models" in body["message"]
    assert "--max-queue" in body["message"]
    assert (await first)[0] == 200


async def test_a_failed_warm_answers_its_waiters_503_with_the_reason(
    installed_models, aiohttp_client
):
    client, startup = await serve(aiohttp_client, "warm-fails")
    status, body = await predict(client, "warm-fails")
    assert status == 503, body
    assert "could not start" in body["message"]
    assert "weights not found" in body["message"]
    assert not await startup.finished()
    status, body = await get(client, "/ready")
    assert status == 503
    assert body["status"].startswith("not started:")
    assert "weights not found" in body["status"]
    assert (await get(client, "/health"))[0] == 200
