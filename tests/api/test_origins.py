"""Cross-site requests cannot act; allowed origins get CORS; Host allow-list."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from deepaas.api import create_app
from deepaas.api.security.guard import Guard
from deepaas.api.security.origins import OriginPolicy, default_allowed_hosts
from deepaas.engine.build import build_executors
from deepaas.training import TrainingService
from tests.conftest import spec

PREDICT = "/v2/models/echo/predict/"
TRAIN = "/v2/models/trainer/train/"
FRONT_END = "https://dashboard.example.org"


@pytest.fixture
def serve(installed_models: Any, aiohttp_client: Any, tmp_path: Path) -> Any:
    async def make(guard: Guard | None = None, trainings: bool = False) -> TestClient:
        executors = build_executors([spec("echo"), spec("trainer")], workers=0)
        service = TrainingService(tmp_path / "state") if trainings else None
        app = create_app(executors, trainings=service, guard=guard)
        return await aiohttp_client(app)

    return make


def own_origin(client: TestClient) -> str:
    return f"http://{client.host}:{client.port}"


async def test_a_foreign_form_post_starts_no_training(serve: Any) -> None:
    """The cross-site form POST of the issue: refused, and nothing was started."""
    client = await serve(trainings=True)
    resp = await client.post(
        TRAIN, data={"seconds": "0.1"}, headers={"Origin": "https://evil.example"}
    )
    assert resp.status == 403
    body = await resp.json()
    assert "https://evil.example" in body["message"]
    assert await (await client.get(TRAIN)).json() == []


@pytest.mark.slow
async def test_a_foreign_delete_is_refused_and_the_training_stays(serve: Any) -> None:
    client = await serve(trainings=True)
    resp = await client.post(TRAIN, params={"seconds": "0.2"})  # a script: no Origin
    assert resp.status == 200
    uuid = (await resp.json())["uuid"]
    resp = await client.delete(f"{TRAIN}{uuid}", headers={"Origin": "null"})
    assert resp.status == 403
    assert (await resp.json())["message"]
    deadline = time.monotonic() + 30
    while (record := await (await client.get(f"{TRAIN}{uuid}")).json())["status"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert record["status"] == "done"  # it ran to its end: never cancelled


async def test_scripts_and_same_origin_pages_go_through(serve: Any) -> None:
    client = await serve()
    assert (await client.post(PREDICT, json={})).status == 200  # no Origin
    resp = await client.post(PREDICT, json={}, headers={"Origin": own_origin(client)})
    assert resp.status == 200
    # Behind a proxy the Host differs; the browser still says same-origin.
    resp = await client.post(
        PREDICT,
        json={},
        headers={"Origin": "https://public.example", "Sec-Fetch-Site": "same-origin"},
    )
    assert resp.status == 200
    resp = await client.post(
        PREDICT,
        json={},
        headers={"Origin": "https://public.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert resp.status == 403


async def test_foreign_reads_are_answered_without_cors(serve: Any) -> None:
    client = await serve()
    resp = await client.get("/v2/models/", headers={"Origin": "https://evil.example"})
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_an_allowed_origin_acts_and_reads_with_cors(serve: Any) -> None:
    client = await serve(Guard(origins=OriginPolicy(allowed_origins=(FRONT_END,))))
    resp = await client.post(PREDICT, json={}, headers={"Origin": FRONT_END})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == FRONT_END
    assert "Origin" in resp.headers.getall("Vary")
    # Errors too, so that the page can show their message.
    resp = await client.get("/v2/models/nope/", headers={"Origin": FRONT_END})
    assert resp.status == 404
    assert resp.headers["Access-Control-Allow-Origin"] == FRONT_END
    resp = await client.post(
        PREDICT, json={}, headers={"Origin": "https://evil.example"}
    )
    assert resp.status == 403
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_preflights_of_allowed_origins_are_answered(serve: Any) -> None:
    client = await serve(Guard(origins=OriginPolicy(allowed_origins=(FRONT_END,))))
    asked = {
        "Origin": FRONT_END,
        "Access-Control-Request-Method": "DELETE",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    resp = await client.options(f"{TRAIN}{'0' * 32}", headers=asked)
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == FRONT_END
    assert "DELETE" in resp.headers["Access-Control-Allow-Methods"]
    assert resp.headers["Access-Control-Allow-Headers"] == "authorization, content-type"

    resp = await client.options(
        PREDICT, headers={**asked, "Origin": "https://evil.example"}
    )
    assert resp.status == 403
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "evil.example" in (await resp.json())["message"]

    resp = await client.options(
        PREDICT, headers={**asked, "Access-Control-Request-Method": "DELETE"}
    )
    assert resp.status == 405
    assert "POST" in resp.headers["Allow"]
    resp = await client.options("/no/such/path", headers=asked)
    assert resp.status == 404
    assert "message" in await resp.json()


async def test_without_allowed_origins_options_is_still_405(serve: Any) -> None:
    client = await serve()
    resp = await client.options(
        PREDICT,
        headers={"Origin": FRONT_END, "Access-Control-Request-Method": "POST"},
    )
    assert resp.status == 405
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_a_host_outside_the_allow_list_is_refused(serve: Any) -> None:
    """DNS rebinding: evil.example resolving to us looks same-origin to a browser."""
    guard = Guard(
        origins=OriginPolicy(allowed_hosts=default_allowed_hosts("127.0.0.1"))
    )
    client = await serve(guard)
    rebound = {"Host": "evil.example:5000", "Origin": "http://evil.example:5000"}
    for method, path in (("POST", PREDICT), ("GET", "/v2/models/")):
        resp = await client.request(method, path, json={}, headers=rebound)
        assert resp.status == 421, (method, path)
        assert "evil.example" in (await resp.json())["message"]
    for host in ("localhost:5000", "127.0.0.1", "[::1]:80", "api.localhost"):
        resp = await client.get("/v2/models/", headers={"Host": host})
        assert resp.status == 200, host
    # Probes answer an orchestrator that names the pod's address.
    for path in ("/health", "/ready"):
        resp = await client.get(path, headers={"Host": "10.1.2.3:5000"})
        assert resp.status in (200, 503), path
        assert resp.status != 421


async def test_host_decisions_stay_right_past_the_remembered_ones(serve: Any) -> None:
    """Decisions are remembered per Host value, a bounded number of them."""
    guard = Guard(origins=OriginPolicy(allowed_hosts=(".example.org",)))
    client = await serve(guard)
    # More distinct values than are remembered, allowed and refused in turn,
    # then the first ones again (forgotten meanwhile).
    hosts = [f"h{i}.example.org" if i % 2 else f"h{i}.evil.test" for i in range(300)]
    for host in hosts + hosts[:4]:
        resp = await client.get("/v2/models/", headers={"Host": host})
        assert resp.status == (200 if host.endswith(".example.org") else 421), host
        if resp.status == 421:
            assert host in (await resp.json())["message"]


def test_default_hosts_follow_the_listening_address() -> None:
    assert default_allowed_hosts("127.0.0.1") is not None
    assert default_allowed_hosts("::1") is not None
    assert default_allowed_hosts("localhost") is not None
    assert default_allowed_hosts("0.0.0.0") is None
    assert default_allowed_hosts("192.0.2.7") is None


def test_origins_and_hosts_are_validated() -> None:
    with pytest.raises(ValueError, match="allowed-origins"):
        OriginPolicy(allowed_origins=("dashboard.example.org",))
    with pytest.raises(ValueError, match="allowed-origins"):
        OriginPolicy(allowed_origins=("https://x.example/path",))
    policy = OriginPolicy(
        allowed_origins=("HTTPS://Dash.Example.org/",), allowed_hosts=(".example.org",)
    )
    assert policy.origin_allowed("https://dash.example.org")
    assert policy.host_allowed("api.example.org:443")
    assert policy.host_allowed("example.org")
    assert not policy.host_allowed("badexample.org")
    assert OriginPolicy(allowed_hosts=("*",)).allowed_hosts is None
