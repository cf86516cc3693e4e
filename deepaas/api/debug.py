"""GET /debug/ and /v2/debug/: what the server printed and logged, when on."""

from __future__ import annotations

from aiohttp import web

from deepaas.api import openapi
from deepaas.api.capture import DebugCapture
from deepaas.api.keys import DEBUG_CAPTURE
from deepaas.api.routes import Route
from deepaas.api.routing import add_route

__all__ = ["DebugCapture", "debug", "setup"]


async def debug(request: web.Request) -> web.Response:
    capture = request.app.get(DEBUG_CAPTURE)
    if capture is None:
        return web.Response(status=204)
    return web.Response(text=capture.text(), content_type="text/plain")


#: Where DEEPaaS 2.x served it (and described it), and a shorter path.
V2_DEBUG = Route(
    method="GET", path="/v2/debug/", kind="train", doc=openapi.debug_operation
)
DEBUG = Route(method="GET", path="/debug/", kind="train", doc=None)


def setup(app: web.Application) -> None:
    """Serve it where DEEPaaS 2.x did (``/v2/debug/``) and at ``/debug/``."""
    add_route(app, DEBUG, debug)
    add_route(app, V2_DEBUG, debug)
