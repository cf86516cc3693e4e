"""One access-log line per request, and the request id in answers and logs.

A real server on loopback, built as deepaas-run builds it: ``create_app``
under a ``web.AppRunner`` given :func:`access_log_options`, its HTTP server
hardened (which answers and counts what no route sees).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from deepaas.api import ApiSettings, create_app
from deepaas.api.access_log import ACCESS_LOGGER, access_log_options
from deepaas.api.metrics import METRICS
from deepaas.api.protocol import ServerLimits, harden_server, runner_options
from deepaas.api.routes import Route
from deepaas.api.routing import add_route
from deepaas.engine.build import build_executors
from tests.conftest import spec

ERRORS_LOGGER = "deepaas.api.errors"

# client "request line" status size "referer" "user agent" seconds id
LINE = re.compile(
    r'(?P<client>\S+) "(?P<method>\S+) (?P<path>\S+) HTTP/1\.[01]" (?P<status>\d{3}) '
    r'(?P<size>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)" '
    r"(?P<seconds>\d+\.\d{6}) (?P<id>\S+)"
)


async def broken_handler(request: web.Request) -> web.Response:
    raise OSError(f"cannot write /srv/secret/{request.path}")


@contextlib.asynccontextmanager
async def serve(*models: str, **settings: Any) -> AsyncIterator[str]:
    executors = build_executors([spec(m) for m in models], workers=0)
    app = create_app(executors, settings=ApiSettings(**settings))
    # A framework fault: the kind of error that answers a generic 500.
    route = Route(method="GET", path="/test-broken", kind="read", doc=None)
    add_route(app, route, broken_handler)
    limits = ServerLimits()
    runner = web.AppRunner(
        app, **runner_options(limits), **access_log_options(app)
    )
    await runner.setup()
    harden_server(runner, limits)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def access_lines(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
    matches = [LINE.fullmatch(line) for line in lines]
    assert all(matches), lines
    return [m for m in matches if m is not None]


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the error middleware logged: each line names its request id."""
    return [r.getMessage() for r in caplog.records if r.name == ERRORS_LOGGER]


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    caplog.set_level(logging.INFO, logger=ERRORS_LOGGER)
    return caplog


async def test_one_line_per_request_with_its_request_id(installed_models, access_log):
    async with serve("echo") as url, aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/v2/models/echo/predict/?x=1",
            json={"message": "hi"},
            headers={"User-Agent": "probe/1.0", "Referer": "http://front.example/"},
        ) as resp:
            assert resp.status == 200
            rid = resp.headers["X-Request-ID"]
            size = len(await resp.read())
        async with session.get(f"{url}/no/such/path") as resp:
            assert resp.status == 404
            missing_id = resp.headers["X-Request-ID"]
    first, second = access_lines(access_log)
    assert re.fullmatch(r"[0-9a-f]{16}", rid)
    assert first["client"] == "127.0.0.1"
    assert (first["method"], first["path"], first["status"]) == (
        "POST",
        "/v2/models/echo/predict/?x=1",
        "200",
    )
    assert int(first["size"]) > size  # the answer's bytes, headers included
    assert first["referer"] == "http://front.example/"
    assert first["agent"] == "probe/1.0"
    assert 0 < float(first["seconds"]) < 10
    assert first["id"] == rid
    assert (second["path"], second["status"], second["id"]) == (
        "/no/such/path",
        "404",
        missing_id,
    )
    assert missing_id != rid


async def test_a_proxys_sane_request_id_is_kept_and_others_replaced(
    installed_models, access_log
):
    sent = ["edge-7f3a:42/retry.1", "has spaces", "x" * 129, "é"]
    async with serve("echo") as url, aiohttp.ClientSession() as session:
        answered = []
        for rid in sent:
            async with session.get(f"{url}/v2/", headers={"X-Request-ID": rid}) as resp:
                assert resp.status == 200
                answered.append(resp.headers["X-Request-ID"])
    assert answered[0] == sent[0]
    for replaced in answered[1:]:
        assert re.fullmatch(r"[0-9a-f]{16}", replaced)
    assert [m["id"] for m in access_lines(access_log)] == answered


async def test_error_log_lines_carry_the_request_id(installed_models, access_log):
    async with serve("failing") as url, aiohttp.ClientSession() as session:
        async with session.post(f"{url}/v2/models/failing/predict/") as resp:
            assert resp.status == 500
            rid = resp.headers["X-Request-ID"]
    errors = error_lines(access_log)
    assert any(f"(request {rid})" in e and "the model exploded" in e for e in errors), (
        errors
    )
    [line] = access_lines(access_log)
    assert (line["status"], line["id"]) == ("500", rid)


async def test_a_redirect_carries_the_request_id_too(installed_models, access_log):
    async with serve("echo") as url, aiohttp.ClientSession() as session:
        async with session.get(f"{url}/ui", allow_redirects=False) as resp:
            assert resp.status in (301, 302, 307, 308)
            rid = resp.headers["X-Request-ID"]
    [line] = access_lines(access_log)
    assert line["id"] == rid


async def test_access_log_off_logs_nothing_but_metrics_still_count(
    installed_models, access_log
):
    async with serve("echo", access_log=False) as url, aiohttp.ClientSession() as s:
        async with s.get(f"{url}/v2/") as resp:
            assert resp.status == 200
            assert resp.headers["X-Request-ID"]
        async with s.get(f"{url}/metrics") as resp:
            text = await resp.text()
    assert access_lines(access_log) == []
    assert 'deepaas_requests_total{endpoint="/v2",method="GET"' in text


async def test_without_the_access_log_aiohttps_hook_stays_off(installed_models):
    # The routes count requests for /metrics themselves: no hook for that.
    executors = build_executors([spec("echo")], workers=0)
    app = create_app(executors, settings=ApiSettings(access_log=False))
    assert access_log_options(app) == {"access_log": None}
    assert METRICS in app


async def test_a_path_with_merged_slashes_keeps_one_request_id(
    installed_models, access_log
):
    async with serve("failing") as url, aiohttp.ClientSession() as session:
        async with session.post(f"{url}//v2/models//failing/predict/") as resp:
            assert resp.status == 500
            rid = resp.headers["X-Request-ID"]
    errors = error_lines(access_log)
    assert any(f"(request {rid})" in e for e in errors), (rid, errors)
    [line] = access_lines(access_log)
    assert (line["path"], line["id"]) == ("//v2/models//failing/predict/", rid)


async def test_an_unexpected_errors_reference_is_the_request_id(
    installed_models, access_log
):
    async with serve("echo") as url, aiohttp.ClientSession() as session:
        async with session.get(
            f"{url}/test-broken", headers={"X-Request-ID": "lb-1234"}
        ) as resp:
            assert resp.status == 500
            body = await resp.json()
            assert resp.headers["X-Request-ID"] == "lb-1234"
    assert body["reference"] == "lb-1234"
    assert "/srv/secret" not in body["message"]
    errors = error_lines(access_log)
    assert any("(reference lb-1234)" in e for e in errors), errors


async def test_a_request_refused_before_routing_is_logged_and_counted(
    installed_models, access_log
):
    async with serve("echo") as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GARBAGE\x00 / HTTP/1.1\r\n\r\n")
        assert (await reader.readline()).split()[1] == b"400"
        writer.close()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/metrics") as resp:
                text = await resp.text()
    [line, _] = access_lines(access_log)
    assert line["status"] == "400"
    assert (
        'deepaas_requests_total{endpoint="other",method="other",model="",'
        'status="400"} 1.0'
    ) in text
    assert "cannot log or count" not in access_log.text
