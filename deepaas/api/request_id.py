"""The request id: one per request, answered in ``X-Request-ID``.

Every request gets an id: the ``X-Request-ID`` a proxy sent, when it is
sane (1 to 128 letters, digits or ``._:/+=@-``, checked with
:data:`is_sane_id`), else a new one of 16 hex digits (:class:`RequestIds`).
It is answered in the ``X-Request-ID`` header, written in the access log
line (:mod:`deepaas.api.access_log`) and in the server's error log lines,
and it is the reference that a 500 answer gives.  The one wrapper of each
route's handler (``routing.route_handler``) gives it, with
:class:`RequestIds`, rather than an aiohttp middleware, which would cost
every request two extra layers, and hands it to the error answers.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable

from aiohttp import web
from multidict import istr

#: The header (a case-insensitive key made once: looking it up is cheaper).
REQUEST_ID_HEADER = istr("X-Request-ID")

_SANE_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")

#: Whether an ``X-Request-ID`` that a client or proxy sent is kept.
is_sane_id = _SANE_ID.fullmatch


class RequestIds:
    """The request ids of one application.

    An id is a random 63-bit start counted up, in 16 hex digits: unique in
    the process (the ids identify requests, they guard nothing), and a
    counter and a format cost less per request than random bits.
    """

    def __init__(self) -> None:
        # Unique, not secret: seeded from the system's entropy.
        start = random.getrandbits(63)  # noqa: S311
        #: The next new id; a C call (no Python frame) on every request.
        self.new: Callable[[], str] = map(
            "%016x".__mod__, itertools.count(start)
        ).__next__


#: Each application's :class:`RequestIds` (made by its first route).
REQUEST_IDS = web.AppKey("deepaas_request_ids", RequestIds)
