"""aiohttp's internals that deepaas-run relies on are still there, as expected.

deepaas/api/_aiohttp_adapter.py is the one module that touches them; each
test here names the internal and fails with what changed, so that an
upgrade of aiohttp that breaks the adapter says so at once (setup.cfg pins
aiohttp to the minor versions tested).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

from deepaas.api import _aiohttp_adapter as adapter
from deepaas.api.protocol import ServerLimits, harden_server, runner_options

VERSION = aiohttp.__version__


def broken(what: str) -> str:
    return (
        f"aiohttp {VERSION}: {what}; deepaas/api/_aiohttp_adapter.py must be "
        "adapted to this version (or aiohttp pinned back in setup.cfg)"
    )


@pytest.fixture
async def server() -> AsyncIterator[web.Server]:
    """The web.Server that an AppRunner makes, as deepaas-run makes it."""
    runner = web.AppRunner(web.Application(), **runner_options(ServerLimits()))
    await runner.setup()
    assert runner.server is not None
    try:
        yield runner.server
    finally:
        await runner.cleanup()


async def test_the_server_keeps_its_connections_loop_and_handler_arguments(
    server: web.Server,
) -> None:
    assert isinstance(getattr(server, "_connections", None), dict), broken(
        "web.Server._connections is no longer a dict of the open connections"
    )
    assert getattr(server, "_loop", None) is asyncio.get_running_loop(), broken(
        "web.Server._loop is no longer the server's loop"
    )
    kwargs = getattr(server, "_kwargs", None)
    assert isinstance(kwargs, dict), broken(
        "web.Server._kwargs no longer holds the arguments of its RequestHandlers"
    )
    assert kwargs.get("keepalive_timeout") == ServerLimits().keepalive_timeout, broken(
        "the runner's keepalive_timeout no longer reaches web.Server._kwargs"
    )
    assert adapter.connection_count(server) == 0
    assert adapter.open_connections(server) == []


async def test_a_handler_made_as_the_server_makes_its_own_has_the_state_read(
    server: web.Server,
) -> None:
    handler = adapter.make_request_handler(server, adapter.WatchedRequestHandler)
    expected: dict[str, type | tuple[type, ...]] = {
        "_loop": asyncio.AbstractEventLoop,
        "_request_count": int,
        "_request_in_progress": bool,
        "_messages": collections.deque,
        "_force_close": bool,
    }
    for name, kind in expected.items():
        assert isinstance(getattr(handler, name, None), kind), broken(
            f"RequestHandler.{name} is no longer a {kind}"
        )
    for name in ("_waiter", "_current_request"):  # None until a connection
        assert hasattr(handler, name) and getattr(handler, name) is None, broken(
            f"RequestHandler.{name} is gone, or not None on a new handler"
        )
    assert getattr(handler, "_manager", None) is server, broken(
        "RequestHandler._manager is no longer the web.Server that made it"
    )
    assert handler.waiting_for_request() is False
    assert handler.closing() is False
    assert handler.requests_read() == 0
    assert adapter.current_request(handler) is None
    assert handler.web_server() is server


def test_the_overridden_methods_keep_their_signatures() -> None:
    signatures = {
        "data_received": ["self", "data"],
        "connection_made": ["self", "transport"],
        "handle_error": ["self", "request", "status", "exc", "message"],
        "finish_response": ["self", "request", "resp", "start_time"],
    }
    for name, parameters in signatures.items():
        method = getattr(RequestHandler, name, None)
        assert callable(method), broken(f"RequestHandler.{name} is gone")
        found = list(inspect.signature(method).parameters)
        assert found == parameters, broken(
            f"RequestHandler.{name} takes ({', '.join(found)}), "
            f"not ({', '.join(parameters)})"
        )
    assert inspect.iscoroutinefunction(RequestHandler.finish_response), broken(
        "RequestHandler.finish_response is no longer a coroutine function"
    )


async def test_a_request_tells_whether_its_answer_was_started(aiohttp_client):
    seen: list[bool] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        assert hasattr(getattr(request, "_payload_writer", None), "output_size"), (
            broken("BaseRequest._payload_writer (with output_size) is gone")
        )
        seen.append(adapter.answer_started(request))
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"started")
        seen.append(adapter.answer_started(request))
        return response

    app = web.Application()
    app.router.add_get("/stream", stream)
    client = await aiohttp_client(app)
    resp = await client.get("/stream")
    assert await resp.read() == b"started"
    assert seen == [False, True], broken(
        "BaseRequest._payload_writer.output_size no longer counts what was written"
    )


async def test_a_cloned_request_is_answered_by_the_route_set_on_it(aiohttp_client):
    async def other(request: web.Request) -> web.Response:
        return web.Response(text=f"other {request.match_info['name']}")

    async def first(request: web.Request) -> web.StreamResponse:
        assert hasattr(request, "_match_info"), broken(
            "BaseRequest._match_info is gone"
        )
        clone = request.clone(rel_url="/other/x")
        match_info = await request.app.router.resolve(clone)
        assert isinstance(match_info, UrlMappingMatchInfo)
        match_info.add_app(request.app)
        adapter.set_match_info(clone, match_info)
        assert clone.match_info is match_info, broken(
            "setting BaseRequest._match_info no longer routes the request"
        )
        return await match_info.handler(clone)

    app = web.Application()
    app.router.add_get("/first", first)
    app.router.add_get("/other/{name}", other)
    client = await aiohttp_client(app)
    resp = await client.get("/first")
    assert resp.status == 200
    assert await resp.text() == "other x"


async def test_a_runners_server_becomes_the_hardened_server() -> None:
    runner = web.AppRunner(web.Application(), **runner_options(ServerLimits()))
    await runner.setup()
    try:
        harden_server(runner, ServerLimits(max_connections=3))
        server = runner.server
        assert server is not None and isinstance(server, web.Server)
        assert type(server).__name__ == "_HardenedServer"
        handler = server()  # what the loop calls for an accepted connection
        assert isinstance(handler, adapter.WatchedRequestHandler)
    finally:
        await runner.cleanup()


async def test_the_server_class_is_swapped_only_for_a_subclass() -> None:
    class NotAServer:
        pass

    with pytest.raises(TypeError, match="does not subclass Server"):
        adapter.swap_server_class(
            web.Server(lambda r: web.Response()),
            NotAServer,  # type: ignore[type-var]
        )
