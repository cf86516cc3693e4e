"""Route helpers: every path answers with and without a trailing slash.

Every handler registered here answers its errors in JSON
(:func:`~deepaas.api.errors.answer_errors_in_json`), and :func:`add_fallback`
answers the requests that no route takes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from deepaas.api.errors import answer_errors_in_json, no_such_route
from deepaas.api.keys import SETTINGS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_route(
    app: web.Application, method: str, path: str, handler: Handler, *, name: str = ""
) -> None:
    """Register ``path`` and its twin with (or without) the trailing slash."""
    base = app[SETTINGS].base_path
    full = f"{base}{path}" if path != "/" or not base else base + "/"
    twin = full.rstrip("/") if full.endswith("/") else full + "/"
    handler = answer_errors_in_json(handler)
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


def add_fallback(app: web.Application) -> None:
    """Answer 404 or 405 in JSON for whatever no other route takes; add it last."""
    app.router.add_route("*", "/{path:.*}", answer_errors_in_json(no_such_route))
