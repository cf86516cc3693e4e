"""The one place where exceptions become HTTP answers: always JSON.

What a client may read depends on where the error comes from:

* a domain error (:class:`~deepaas.exceptions.DeepaasError`) carries a
  message written for clients, so it is answered as is.  A model's own
  exception is one of them (:class:`~deepaas.exceptions.ModelError`): the
  contract answers ``{"message": "<the model's message>"}`` with 500, and
  the model's author chose that message;
* aiohttp's HTTP errors keep their status and text;
* anything else is unexpected: a fault of the framework or of the system
  (a full disk, a file name too long, a bug), whose text may name server
  paths.  The client gets a generic message with a reference, and the log
  gets the traceback with the same reference.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from deepaas.api.keys import EXECUTORS, SETTINGS
from deepaas.exceptions import (
    DeepaasError,
    ModelError,
    ModelHTTPError,
    ModelNotFound,
)

LOG = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, body: dict[str, object], **headers: str) -> web.Response:
    """A JSON error answer."""
    return web.json_response(body, status=status, headers=headers or None)


async def allowed_methods(request: web.Request) -> set[str]:
    """The methods that the other routes of the request's path answer."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is request.match_info.route.resource:
            continue
        _, methods = await resource.resolve(request)
        allowed |= methods
    return allowed


def error_response(
    request: web.Request, exc: Exception, request_id: str
) -> web.StreamResponse:
    """The JSON answer for an exception a handler raised (redirects re-raised).

    ``request_id`` (:mod:`deepaas.api.request_id`) goes into the log lines
    and is the reference of an unexpected error.
    """
    if isinstance(exc, DeepaasError):
        if isinstance(exc, ModelHTTPError):
            LOG.info(
                "%s %s (request %s): the model answered %d: %s",
                request.method,
                request.path,
                request_id,
                exc.status,
                exc.message,
            )
        elif isinstance(exc, ModelError):
            LOG.error(
                "%s %s (request %s): model error: %s\n%s",
                request.method,
                request.path,
                request_id,
                exc.message,
                exc.traceback,
            )
        elif exc.status >= 500:
            LOG.error(
                "%s %s (request %s): %s",
                request.method,
                request.path,
                request_id,
                exc.message,
            )
        headers = {}
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            headers["Retry-After"] = str(retry_after)
        return json_error(exc.status, exc.to_json(), **headers)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        headers = {
            k: v
            for k, v in exc.headers.items()
            if k.lower() in ("allow", "retry-after")
        }
        message = exc.reason
        if exc.text and not exc.text.startswith(f"{exc.status}:"):
            message = exc.text
        response = json_error(exc.status, {"message": message}, **headers)
        if exc.keep_alive is False:  # e.g. 413: the rest of the body is not read
            response.force_close()
        return response
    return unexpected_error(request, exc, request_id)


def unexpected_error(
    request: web.Request, exc: BaseException, reference: str
) -> web.Response:
    """A 500 that names no detail of the server, and logs them under a reference.

    The reference is the request's id (``X-Request-ID``, also in the access
    log line).
    """
    LOG.error(
        "%s %s failed (reference %s)",
        request.method,
        request.path,
        reference,
        exc_info=exc,
    )
    return json_error(
        500,
        {
            "message": "internal server error; the server's log has the details "
            f"under reference {reference}",
            "reference": reference,
        },
    )


async def no_such_route(request: web.Request) -> web.StreamResponse:
    """The last route: 405 naming the allowed methods when the path exists, else 404.

    Registered for every path and method after all the others, so a request
    that no route takes still gets a JSON answer without a middleware.  Any
    method on a path of a model that is not served is a 404, as in 2.x.
    """
    _check_model_is_served(request)
    allowed = await allowed_methods(request)
    if allowed:
        raise web.HTTPMethodNotAllowed(
            request.method,
            sorted(allowed),
            text=f"{request.path} does not answer {request.method}; it answers "
            f"{', '.join(sorted(allowed))}",
        )
    raise web.HTTPNotFound(text=f"no such path: {request.path}")


def _check_model_is_served(request: web.Request) -> None:
    """Raise 404 when the path names a model (``/v2/models/<name>/...``) not served."""
    base = request.app[SETTINGS].base_path
    if not request.path.startswith(f"{base}/v2/models/"):
        return
    parts = request.path[len(base) :].split("/", 4)  # "", v2, models, name, rest
    served = request.app[EXECUTORS]
    if parts[3] and parts[3] not in served:
        raise unknown_model(parts[3], served)


def unknown_model(name: str, served: Iterable[str]) -> ModelNotFound:
    """The 404 for a model name that is not served here."""
    return ModelNotFound(
        f"model {name!r} is not served here; served models: "
        f"{', '.join(sorted(served)) or 'none'}"
    )
