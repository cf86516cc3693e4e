"""Route helpers: every path answers with and without a trailing slash.

Each route is declared once, as a :class:`~deepaas.api.routes.Route` that
the app's route table keeps (:mod:`deepaas.api.routes`).  Every handler
registered here runs in one wrapper (:func:`route_handler`)
that gives the request its id, runs the route's Host, Origin and token
checks, answers errors in JSON and counts the answer for ``/metrics``;
:func:`add_fallback` answers the requests that no route takes, after
merging repeated slashes.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.hdrs import HOST, ORIGIN
from yarl import URL

from deepaas.api._aiohttp_adapter import set_match_info
from deepaas.api.errors import error_response, no_such_route
from deepaas.api.keys import SETTINGS
from deepaas.api.request_id import (
    REQUEST_ID_HEADER,
    REQUEST_IDS,
    RequestIds,
    is_sane_id,
)
from deepaas.api.request_metrics import REQUEST_METRICS
from deepaas.api.routes import ROUTES, Route, RouteTable
from deepaas.api.security.guard import GUARD, RouteChecks, preflight_first, route_checks
from deepaas.api.startup import STARTUP

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_route(
    app: web.Application, route: Route, handler: Handler, *, name: str = ""
) -> None:
    """Add ``route`` to the app's table and register ``handler`` for it.

    The path is registered under the base path, with its twin with (or
    without) the trailing slash.
    """
    table = app.get(ROUTES)
    if table is None:
        table = app[ROUTES] = RouteTable()
    table.add(route)
    method, path = route.method, route.path
    base = app[SETTINGS].base_path
    full = f"{base}{path}" if path != "/" or not base else base + "/"
    twin = full.rstrip("/") if full.endswith("/") else full + "/"
    handler = route_handler(app, handler, route, route_checks(app, route))
    paths = [full] + ([twin] if twin and twin != full else [])
    for index, route_path in enumerate(paths):
        route_name = (name or None) if index == 0 else None
        if method == "GET":  # and HEAD, as HTTP asks
            app.router.add_get(route_path, handler, name=route_name)
        else:
            app.router.add_route(method, route_path, handler, name=route_name)


def route_handler(
    app: web.Application,
    handler: Handler,
    route: Route | None,
    checks: RouteChecks | None = None,
    *,
    keep_answered: bool = False,
) -> Handler:
    """``handler`` in the one wrapper that every route has.

    The wrapper gives the request its id (answered in ``X-Request-ID``),
    runs ``checks`` (Host, Origin, token), answers whatever the handler
    raises in JSON (:func:`~deepaas.api.errors.error_response`) and counts
    the answer for ``/metrics`` when the app has request metrics (the
    route's labels are fixed here, from ``route``; None for the last
    route, which counts as ``other``).  One
    wrapper, chosen when the app is built, rather than one per concern or
    an aiohttp middleware: each coroutine layer costs every request, and so
    does each Python call in this one (docs/benchmarks.md).
    ``keep_answered``: for the last route, which answers a path with merged
    slashes through that path's own route; the id that route gave (and
    logged) is kept, and that route counted the answer.
    Handlers return their answer unprepared (none streams), so its headers
    can still be set here.
    While the server starts, a route that ``needs_models`` waits here
    (after the checks) until they are warm; the probes answer at once.
    """
    ids = app.get(REQUEST_IDS)
    if ids is None:
        ids = app[REQUEST_IDS] = RequestIds()
    new_id = ids.new
    checks = checks or RouteChecks(kind="")
    origins, host, origin = checks.origins, checks.host, checks.origin
    auth, kind = checks.auth, checks.kind
    # Host values already allowed (the policy's memo): most requests need
    # no call at all for the Host and Origin checks.
    hosts_allowed = origins.host_decisions if origins is not None else {}
    requests = app.get(REQUEST_METRICS)
    counter = requests.for_route(route) if requests is not None else None
    known = counter.known if counter is not None else {}
    by_method = counter.by_method if counter is not None else False
    clock = time.perf_counter
    startup = app.get(STARTUP) if route is not None and route.needs_models else None

    @functools.wraps(handler)
    async def answer(request: web.Request) -> web.StreamResponse:
        started = clock() if counter is not None else 0.0
        headers = request.headers
        rid = headers.get(REQUEST_ID_HEADER)
        if rid is None or not is_sane_id(rid):
            rid = new_id()
        try:
            # The checks raise their refusals (deepaas.exceptions.RequestRefused).
            if origins is not None and (
                (host and hosts_allowed.get(headers.get(HOST, "")) is not True)
                or (origin and ORIGIN in headers)
            ):
                origins.check(request, host, origin)
            if auth is not None:
                await auth.check(request, kind)
            if startup is not None and not startup.started:
                await startup.wait()
            response = await handler(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            try:
                response = error_response(request, exc, rid)
            except web.HTTPException as redirect:  # raised on purpose
                if not (keep_answered and REQUEST_ID_HEADER in redirect.headers):
                    redirect.headers[REQUEST_ID_HEADER] = rid
                    if counter is not None:
                        counter.count(request, redirect.status, clock() - started)
                raise
        if keep_answered and REQUEST_ID_HEADER in response.headers:
            return response  # answered, counted and logged by the merged path
        response.headers[REQUEST_ID_HEADER] = rid
        if counter is not None:
            # The usual answers skip counter.count(): a call costs more.
            status = response.status
            seconds = clock() - started
            add = known.get((request.method, status) if by_method else status)
            if add is not None:
                add(seconds)
            else:
                counter.count(request, status, seconds)
        return response

    return answer


def url(request: web.Request, path: str) -> str:
    """A path as clients must use it, with the configured base path."""
    return f"{request.app[SETTINGS].base_path}{path}"


_SLASHES = re.compile(r"/{2,}")


async def fallback(request: web.Request) -> web.StreamResponse:
    """Answer a request no route took: the merged path's route, else 404/405.

    The graphical front-end asks for ``///v2/models/<name>/``, and DEEPaaS
    2.x merged repeated slashes (with a redirect).  Merging here, in the
    last route, rather than in a middleware costs nothing to the requests
    that some route takes.  The request is answered at once by the route of
    the merged path, methods and body untouched.
    """
    if "//" not in request.rel_url.raw_path:
        return await no_such_route(request)
    url = URL.build(
        path=_SLASHES.sub("/", request.rel_url.raw_path),
        query_string=request.rel_url.raw_query_string,
        encoded=True,
    )
    merged = request.clone(rel_url=url)
    match_info = await request.app.router.resolve(merged)
    match_info.add_app(request.app)
    set_match_info(merged, match_info)
    return await match_info.handler(merged)


def add_fallback(app: web.Application) -> None:
    """Answer 404 or 405 in JSON for whatever no other route takes; add it last."""
    guard = app.get(GUARD)
    last = preflight_first(fallback) if guard and guard.origins.cors else fallback
    handler = route_handler(app, last, None, keep_answered=True)
    app.router.add_route("*", "/{path:.*}", handler)
