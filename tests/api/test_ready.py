"""GET /ready: 503 with Retry-After until every worker is warm (docs/engine.md)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from deepaas.api import create_app
from deepaas.engine.build import build_executors
from tests.conftest import spec

pytestmark = pytest.mark.slow

TIMEOUT = aiohttp.ClientTimeout(total=20)


async def ready(client) -> tuple[int, dict[str, str], dict]:
    resp = await client.get("/ready", timeout=TIMEOUT)
    return resp.status, dict(resp.headers), await resp.json()


async def test_ready_sends_retry_after_until_the_workers_are_warm(
    installed_models, aiohttp_client, monkeypatch
):
    """A probe that is told "not yet" is also told when to ask again."""
    monkeypatch.setenv("DEEPAAS_TEST_WARM_SECONDS", "1")
    executors = build_executors([spec("slow-warm")], workers=1)
    client = await aiohttp_client(create_app(executors, manage_executors=False))
    pool = executors["slow-warm"]

    status, headers, body = await ready(client)  # nothing started yet
    assert (status, body["status"]) == (503, "not ready")
    assert headers["Retry-After"] == "1"

    starting = asyncio.ensure_future(pool.start())
    try:
        deadline = time.monotonic() + 20
        while pool.status()["warming"] == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        status, headers, body = await ready(client)
        assert (status, body["status"]) == (503, "warming"), body
        assert headers["Retry-After"] == "1"
        assert body["models"]["slow-warm"]["ready"] == 0

        await asyncio.wait_for(starting, 20)
        status, headers, body = await ready(client)
        assert (status, body["status"]) == (200, "ready")
        assert "Retry-After" not in headers
        counts = body["models"]["slow-warm"]
        assert (counts["workers"], counts["ready"], counts["warming"]) == (1, 1, 0)
    finally:
        await pool.stop()
