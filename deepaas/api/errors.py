"""The one place where exceptions become HTTP answers: always JSON."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from deepaas.exceptions import DeepaasError, ModelError, QueueFull, WorkerCrashed

LOG = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, body: dict[str, object], **headers: str) -> web.Response:
    """A JSON error answer."""
    return web.json_response(body, status=status, headers=headers or None)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Map domain errors to their status and everything else to a JSON 500."""
    try:
        return await handler(request)
    except DeepaasError as exc:
        if isinstance(exc, ModelError):
            LOG.error("%s %s: model error: %s\n%s", request.method, request.path,
                      exc.message, exc.traceback)
        elif exc.status >= 500:
            LOG.error("%s %s: %s", request.method, request.path, exc.message)
        headers = {}
        if isinstance(exc, (QueueFull, WorkerCrashed)):
            headers["Retry-After"] = "1"
        return json_error(exc.status, exc.to_json(), **headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items()
                   if k.lower() in ("allow", "retry-after")}
        message = exc.reason
        if exc.text and not exc.text.startswith(f"{exc.status}:"):
            message = exc.text
        return json_error(exc.status, {"message": message}, **headers)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        LOG.exception("%s %s failed", request.method, request.path)
        return json_error(500, {"message": f"internal server error: {exc}"})
