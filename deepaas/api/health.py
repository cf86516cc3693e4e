"""GET /health (the process answers) and GET /ready (every worker is warm).

Both suit Kubernetes probes: /health is a liveness probe (200 whenever the
server answers at all, from the moment ``deepaas-run`` opens its port, while
the models still warm), /ready a readiness probe that answers 503 while the
server starts (``starting: warming <model>``), while workers warm up, after
a crash until the replacement is warm, when no worker of some model is
alive, when some model is stalled (every worker busy, none free to take a
call for ``--ready-stall-timeout``: a hung model), and when the training
store was found unusable (``trainings`` says why).  Both bodies carry each
model's worker counts, so that the same probes help a human see why.

With authentication on, the probes stay open (by default) but the worker
counts (model names, process ids, the last error) are shown only to a
request whose token may ``read`` (the kind of the model listings); others
get the status alone, which is all a probe needs.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from deepaas.api import openapi
from deepaas.api.keys import EXECUTORS, TRAININGS
from deepaas.api.routes import Route
from deepaas.api.routing import add_route
from deepaas.api.security.guard import GUARD
from deepaas.api.startup import STARTUP


def _models(request: web.Request) -> dict[str, dict[str, Any]]:
    return {name: ex.status() for name, ex in request.app[EXECUTORS].items()}


def readiness(models: dict[str, dict[str, Any]]) -> str:
    """``ready``, ``warming``, ``degraded`` (some workers down), ``stalled``
    (no worker free to take a call for long) or ``not ready``."""
    if not models:
        return "not ready"
    if any(s.get("stalled") for s in models.values()):
        return "stalled"
    if all(0 < s["ready"] == s["workers"] for s in models.values()):
        return "ready"
    if any(s["ready"] == 0 for s in models.values()):
        if any(s.get("warming") for s in models.values()):
            return "warming"
        return "not ready"
    return "degraded"


async def _shows_details(request: web.Request) -> bool:
    guard = request.app.get(GUARD)
    auth = guard.auth if guard is not None else None
    return auth is None or await auth.allows(request, "read")


async def health(request: web.Request) -> web.Response:
    body: dict[str, Any] = {"status": "alive"}
    startup = request.app.get(STARTUP)
    if startup is not None and startup.pending:
        body["startup"] = startup.pending
    if await _shows_details(request):
        body["models"] = _models(request)
    return web.json_response(body)


async def ready(request: web.Request) -> web.Response:
    models = _models(request)
    status = readiness(models)
    startup = request.app.get(STARTUP)
    if startup is not None and startup.pending:
        status = startup.pending  # the server's own start-up says more
    body: dict[str, Any] = {"status": status}
    # What the training store last said (never asked here: /ready answers
    # at once whatever the store does).
    trainings = request.app.get(TRAININGS)
    problem = getattr(trainings, "problem", None)
    if problem and status == "ready":
        status = body["status"] = "trainings unavailable"
    if problem:
        body["trainings"] = problem
    if await _shows_details(request):
        body["models"] = models
    return web.json_response(
        body,
        status=200 if status == "ready" else 503,
        headers=None if status == "ready" else {"Retry-After": "1"},
    )


HEALTH = Route(
    method="GET", path="/health", kind="health", doc=openapi.health_operation
)
READY = Route(method="GET", path="/ready", kind="ready", doc=openapi.ready_operation)


def setup(app: web.Application) -> None:
    add_route(app, HEALTH, health)
    add_route(app, READY, ready)
