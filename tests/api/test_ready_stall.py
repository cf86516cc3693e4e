"""A hung model is visible: /ready stops saying ready (issue 11, item 3).

When every worker of a model has been busy, and none free to take a call,
for longer than --ready-stall-timeout, /ready answers 503 "stalled" (with
--predict-timeout 0, the default, nothing else ends a hung call).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from deepaas.api import create_app
from deepaas.config import build_config
from deepaas.engine.build import build_executors
from tests.api.test_abandoned import Server
from tests.conftest import spec

SLEEP = {"how": "sleep"}


@pytest.fixture
def make_client(installed_models: Any, aiohttp_client: Any) -> Any:
    async def make(workers: int, stall: float) -> Any:
        executors = build_executors(
            [spec("crashy")], workers=workers, ready_stall_timeout=stall
        )
        return await aiohttp_client(create_app(executors))

    return make


async def ready(client: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/ready")
    return resp.status, await resp.json()


async def wait_for_status(client: Any, wanted: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        _, body = await ready(client)
        if body["status"] == wanted:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)


def hang(client: Any, seconds: float) -> asyncio.Future[Any]:
    return asyncio.ensure_future(
        client.post("/v2/models/crashy/predict/", json={**SLEEP, "seconds": seconds})
    )


@pytest.mark.slow
async def test_a_hung_worker_makes_ready_answer_503_stalled(make_client):
    client = await make_client(workers=1, stall=0.5)
    assert (await ready(client))[0] == 200
    call = hang(client, 3)
    start = time.monotonic()
    body = await wait_for_status(client, "stalled", 2.5)
    assert time.monotonic() - start >= 0.5
    model = body["models"]["crashy"]
    assert model["stalled"] is True and model["stalled_for"] >= 0.5
    status, _ = await ready(client)
    assert status == 503
    health = await client.get("/health")  # still alive: a readiness matter only
    assert health.status == 200
    assert (await health.json())["models"]["crashy"]["stalled"] is True
    assert (await call).status == 200
    status, body = await ready(client)
    assert status == 200 and body["status"] == "ready"


@pytest.mark.slow
async def test_a_free_worker_means_not_stalled(make_client):
    client = await make_client(workers=2, stall=0.3)
    call = hang(client, 1.5)
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        status, body = await ready(client)
        assert status == 200, body
        await asyncio.sleep(0.1)
    assert (await call).status == 200


async def test_in_process_threads_all_hung_are_stalled(make_client):
    client = await make_client(workers=0, stall=0.5)  # four threads
    calls = [hang(client, 2.5) for _ in range(4)]
    body = await wait_for_status(client, "stalled", 2.0)
    assert body["models"]["crashy"]["stalled"] is True
    assert [(await c).status for c in calls] == [200] * 4
    assert (await ready(client))[0] == 200


@pytest.mark.slow
async def test_zero_never_reports_a_stall(make_client):
    client = await make_client(workers=1, stall=0)
    call = hang(client, 1.0)
    await asyncio.sleep(0.7)
    status, body = await ready(client)
    assert status == 200 and body["models"]["crashy"]["stalled"] is False
    assert (await call).status == 200


def test_the_option_has_a_default_and_refuses_negatives():
    assert build_config([]).ready_stall_timeout == 60.0
    with pytest.raises(ValueError, match="--ready-stall-timeout must be >= 0"):
        build_executors([spec("crashy")], workers=1, ready_stall_timeout=-1)


@pytest.mark.slow
async def test_deepaas_run_reports_a_hung_model(tmp_path):
    server = Server(tmp_path, "--ready-stall-timeout", "0.5")
    try:
        async with aiohttp.ClientSession() as session:
            call = asyncio.ensure_future(
                session.post(server.predict, json={**SLEEP, "seconds": 2.5})
            )
            deadline = time.monotonic() + 2.0
            while True:
                async with session.get(server.url + "/ready") as resp:
                    body = await resp.json()
                    if resp.status == 503 and body["status"] == "stalled":
                        assert resp.headers["Retry-After"] == "1"
                        break
                assert time.monotonic() < deadline, body
                await asyncio.sleep(0.05)
            (await call).close()
    finally:
        server.close()
