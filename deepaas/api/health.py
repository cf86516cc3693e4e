"""GET /health (the process answers) and GET /ready (every worker is warm).

Both suit Kubernetes probes: /health is a liveness probe, /ready a
readiness probe that answers 503 while workers warm up or when none is
alive.
"""

from __future__ import annotations

from aiohttp import web

from deepaas.api.keys import EXECUTORS
from deepaas.api.routing import add_route


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def ready(request: web.Request) -> web.Response:
    models = {name: ex.status() for name, ex in request.app[EXECUTORS].items()}
    ok = bool(models) and all(
        state["ready"] > 0 and state["ready"] == state["workers"]
        for state in models.values()
    )
    any_alive = all(state["ready"] > 0 for state in models.values())
    status = "ready" if ok else ("degraded" if any_alive and models else "not ready")
    return web.json_response(
        {"status": status, "models": models}, status=200 if ok else 503
    )


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/health", health)
    add_route(app, "GET", "/ready", ready)
