"""Route helpers: every path answers with and without a trailing slash.

Every handler registered here answers its errors in JSON
(:func:`~deepaas.api.errors.answer_errors_in_json`), and :func:`add_fallback`
answers the requests that no route takes, after merging repeated slashes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from yarl import URL

from deepaas.api.errors import answer_errors_in_json, no_such_route
from deepaas.api.guard import GUARD, guard_route, preflight_first
from deepaas.api.keys import SETTINGS
from deepaas.api.request_id import with_request_id

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_route(
    app: web.Application, method: str, path: str, handler: Handler, *, name: str = ""
) -> None:
    """Register ``path`` and its twin with (or without) the trailing slash."""
    base = app[SETTINGS].base_path
    full = f"{base}{path}" if path != "/" or not base else base + "/"
    twin = full.rstrip("/") if full.endswith("/") else full + "/"
    # Host, Origin and token checks, when this route has any (else none).
    handler = answer_errors_in_json(guard_route(app, method, path, handler))
    handler = with_request_id(handler)  # outermost: every answer carries it
    paths = [full] + ([twin] if twin and twin != full else [])
    for index, route_path in enumerate(paths):
        route_name = (name or None) if index == 0 else None
        if method == "GET":  # and HEAD, as HTTP asks
            app.router.add_get(route_path, handler, name=route_name)
        else:
            app.router.add_route(method, route_path, handler, name=route_name)


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
    merged._match_info = match_info  # as aiohttp's Application._handle does
    return await match_info.handler(merged)


def add_fallback(app: web.Application) -> None:
    """Answer 404 or 405 in JSON for whatever no other route takes; add it last."""
    guard = app.get(GUARD)
    last = preflight_first(fallback) if guard and guard.origins.cors else fallback
    handler = with_request_id(answer_errors_in_json(last), keep_answered=True)
    app.router.add_route("*", "/{path:.*}", handler)
