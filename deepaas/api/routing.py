"""Route helpers: every path answers with and without a trailing slash."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from deepaas.api.keys import SETTINGS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_route(
    app: web.Application, method: str, path: str, handler: Handler, *, name: str = ""
) -> None:
    """Register ``path`` and its twin with (or without) the trailing slash."""
    base = app[SETTINGS].base_path
    full = f"{base}{path}" if path != "/" or not base else base + "/"
    twin = full.rstrip("/") if full.endswith("/") else full + "/"
    app.router.add_route(method, full, handler, name=name or None)
    if twin and twin != full:
        app.router.add_route(method, twin, handler)


def url(request: web.Request, path: str) -> str:
    """A path as clients must use it, with the configured base path."""
    return f"{request.app[SETTINGS].base_path}{path}"
