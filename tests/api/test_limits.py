"""The engine's documented limits, as a client sees them (docs/engine.md).

``--max-queue`` defaults to 64 waiting requests per worker, in-process
models answer 504 past ``--predict-timeout``, and ``"thread"`` models run
in a pool of 4 threads.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from deepaas.api import create_app
from deepaas.engine.build import build_executors
from deepaas.engine.probe import plan_from_settings
from deepaas.engine.settings import EngineSettings
from tests.conftest import spec

TIMEOUT = aiohttp.ClientTimeout(total=60)


@pytest.mark.slow
async def test_the_queue_holds_64_requests_per_worker_by_default(
    make_client, tmp_path: Path
):
    client = await make_client("gate", workers=2)  # max_queue=0: the default
    gate = tmp_path / "open"
    url = str(client.make_url("/v2/models/gate/predict/"))
    # Beyond aiohttp's default of 100 connections per session.
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=TIMEOUT
    ) as session:

        async def post() -> tuple[int, dict[str, str], dict]:
            async with session.post(url, params={"gate": str(gate)}) as resp:
                return resp.status, dict(resp.headers), await resp.json()

        held = [asyncio.ensure_future(post()) for _ in range(2 + 128)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            counts = (await (await client.get("/ready")).json())["models"]["gate"]
            if (counts["busy"], counts["queued"]) == (2, 128) or any(
                h.done() for h in held
            ):
                break
            await asyncio.sleep(0.02)
        assert (counts["busy"], counts["queued"]) == (2, 128)
        assert not any(h.done() for h in held)  # none of the 128 was refused

        status, headers, body = await post()  # the 129th waiting
        assert status == 503
        assert headers["Retry-After"] == "1"
        assert "--max-queue" in body["message"]

        gate.touch()
        answers = await asyncio.gather(*held)
    assert [status for status, _, _ in answers] == [200] * 130


async def test_in_process_predict_timeout_answers_504(make_client, tmp_path: Path):
    client = await make_client("gate", workers=0, predict_timeout=0.5)
    gate = tmp_path / "open"
    started = time.monotonic()
    try:
        resp = await client.post(
            "/v2/models/gate/predict/", params={"gate": str(gate)}, timeout=TIMEOUT
        )
        body = await resp.json()
    finally:
        gate.touch()  # the thread cannot be stopped: let it finish
    assert resp.status == 504, body
    assert "--predict-timeout" in body["message"]
    assert time.monotonic() - started < 10
    resp = await client.post(
        "/v2/models/gate/predict/", params={"gate": str(gate)}, timeout=TIMEOUT
    )
    assert resp.status == 200


@pytest.mark.slow
async def test_thread_models_run_in_a_pool_of_four_threads(
    installed_models, aiohttp_client
):
    # As deepaas-run does: the start-up probe reads deepaas_execution.
    plan = await plan_from_settings(
        [spec("thread-peak")], EngineSettings(workers=2), gpus=[], environ={}
    )
    executors = build_executors([spec("thread-peak")], workers=2, worker_envs=plan)
    client = await aiohttp_client(create_app(executors))

    async def post() -> dict:
        resp = await client.post("/v2/models/thread-peak/predict/", timeout=TIMEOUT)
        assert resp.status == 200
        return (await resp.json())["predictions"]

    answers = await asyncio.gather(*(post() for _ in range(8)))
    assert max(a["peak"] for a in answers) == 4
    assert len({a["thread"] for a in answers}) == 4
    resp = await client.get("/ready", timeout=TIMEOUT)
    assert (await resp.json())["models"]["thread-peak"]["mode"] == "in-process (thread)"
