"""The one place where exceptions become HTTP answers: always JSON.

What a client may read depends on where the error comes from:

* a domain error (:class:`~deepaas.exceptions.DeepaasError`) carries a
  message written for clients, its status and its headers, so it is
  answered as is.  The server's refusals are domain errors too
  (:class:`~deepaas.exceptions.RequestRefused`: a token, an origin, a
  Host, a limit), raised by the checks and by the HTTP server.  A model's own
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
from http import HTTPStatus

from aiohttp import hdrs, web

from deepaas.api.keys import EXECUTORS, SETTINGS
from deepaas.exceptions import (
    DeepaasError,
    InternalError,
    ModelError,
    ModelHTTPError,
    ModelNotFound,
    RequestRefused,
)

LOG = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_answer(exc: DeepaasError | web.HTTPException) -> web.Response:
    """The JSON answer of an error: its status, its headers and its body.

    Every error answer of the API is made here, those of the routes
    (through :func:`error_response`) and those of the HTTP server before
    any route (:mod:`deepaas.api.protocol`, through :func:`error_bytes`
    where no aiohttp request exists).  A domain error carries its status
    and headers; aiohttp's HTTP errors keep their status, text, ``Allow``
    and ``Retry-After``.
    """
    if isinstance(exc, DeepaasError):
        headers = exc.answer_headers()
        return web.json_response(
            exc.to_json(), status=exc.status, headers=headers or None
        )
    headers = {
        k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")
    }
    message = exc.reason
    if exc.text and not exc.text.startswith(f"{exc.status}:"):
        message = exc.text
    response = web.json_response(
        {"message": message}, status=exc.status, headers=headers or None
    )
    if exc.keep_alive is False:  # e.g. 413: the rest of the body is not read
        response.force_close()
    return response


def error_bytes(exc: DeepaasError) -> bytes:
    """:func:`error_answer` as a complete HTTP/1.1 answer that closes the connection.

    Written straight to a transport where no aiohttp request exists (a
    connection over the bound, a request whose headers never came) or where
    its handler will not answer (shutdown).
    """
    response = error_answer(exc)
    body = response.body
    assert isinstance(body, bytes)  # a JSON answer's body is its encoded text
    content_type = response.headers[hdrs.CONTENT_TYPE]
    lines = [
        f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(
            f"{name}: {value}"
            for name, value in response.headers.items()
            if name != hdrs.CONTENT_TYPE
        ),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


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
        elif exc.status >= 500 and not isinstance(exc, RequestRefused):
            LOG.error(
                "%s %s (request %s): %s",
                request.method,
                request.path,
                request_id,
                exc.message,
            )
        return error_answer(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return error_answer(exc)
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
    return error_answer(InternalError(reference))


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
