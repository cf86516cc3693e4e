"""The request id: one per request, answered in ``X-Request-ID``.

Every request gets an id: the ``X-Request-ID`` a proxy sent, when it is
sane (1 to 128 letters, digits or ``._:/+=@-``), else 16 random hex digits.
It is answered in the ``X-Request-ID`` header, written in the access log
line (:mod:`deepaas.api.access_log`) and in the server's error log lines,
and it is the reference that a 500 answer gives.  The one wrapper of each
route's handler (``routing.add_route``) gives it, with
:class:`RequestIds`, rather than an aiohttp middleware, which would cost
every request two extra layers.
"""

from __future__ import annotations

import itertools
import random
import re
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

_SANE_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def request_id(request: web.BaseRequest) -> str:
    """The id of ``request`` (``-`` before a route took it).

    Only for error paths: the look-up of a missing key raises inside.
    """
    return str(request.get(REQUEST_ID_KEY, "-"))


class RequestIds:
    """The request ids of one application.

    An id is a random 63-bit start counted up, in 16 hex digits: unique in
    the process (the ids identify requests, they guard nothing), and a
    counter and a format cost less per request than random bits.
    """

    def __init__(self) -> None:
        # Unique, not secret: seeded from the system's entropy.
        self._next = itertools.count(random.getrandbits(63)).__next__  # noqa: S311

    def for_request(self, request: web.BaseRequest) -> str:
        """The id for ``request``: a sane ``X-Request-ID`` it sent, else a new one."""
        incoming = request.headers.get(REQUEST_ID_HEADER)
        if incoming is not None and _SANE_ID.fullmatch(incoming):
            return incoming
        return f"{self._next():016x}"


#: Each application's :class:`RequestIds` (made by its first route).
REQUEST_IDS = web.AppKey("deepaas_request_ids", RequestIds)
