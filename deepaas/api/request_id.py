"""The request id: one per request, answered in ``X-Request-ID``.

Every request gets an id: the ``X-Request-ID`` a proxy sent, when it is
sane (1 to 128 letters, digits or ``._:/+=@-``), else 16 random hex digits.
It is answered in the ``X-Request-ID`` header, written in the access log
line (:mod:`deepaas.api.access_log`) and in the server's error log lines,
and it is the reference that a 500 answer gives.  :func:`with_request_id`
wraps every route's handler (``routing.add_route``) rather than being an
aiohttp middleware, which would cost every request two extra layers.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

REQUEST_ID_HEADER = "X-Request-ID"
#: Where the id is kept in the request's own mapping (a typed key where
#: aiohttp has them, 3.13 and later).
REQUEST_ID_KEY: Any = (
    web.RequestKey("deepaas_request_id", str)
    if hasattr(web, "RequestKey")
    else "deepaas_request_id"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_SANE_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def request_id(request: web.BaseRequest) -> str:
    """The id of ``request`` (``-`` before a route took it).

    Only for error paths: the look-up of a missing key raises inside.
    """
    return str(request.get(REQUEST_ID_KEY, "-"))


def _new_request_id(request: web.BaseRequest) -> str:
    incoming = request.headers.get(REQUEST_ID_HEADER)
    if incoming is not None and _SANE_ID.fullmatch(incoming):
        return incoming
    # Unique, not secret: the Mersenne Twister (seeded from the system's
    # entropy) is three times cheaper than os.urandom's system call.
    return f"{random.getrandbits(64):016x}"  # noqa: S311


def with_request_id(handler: Handler, *, keep_answered: bool = False) -> Handler:
    """Wrap a route handler: give the request its id and answer it in a header.

    ``keep_answered``: for the last route, which answers a path with merged
    slashes through that path's own route; the id that route gave (and
    logged) is kept.
    """

    @functools.wraps(handler)
    async def answer(request: web.Request) -> web.StreamResponse:
        rid = request[REQUEST_ID_KEY] = _new_request_id(request)
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # a redirect, raised on purpose
            exc.headers[REQUEST_ID_HEADER] = rid
            raise
        if not response.prepared and not (
            keep_answered and REQUEST_ID_HEADER in response.headers
        ):
            response.headers[REQUEST_ID_HEADER] = rid
        return response

    return answer
