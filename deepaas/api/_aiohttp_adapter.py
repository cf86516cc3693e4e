"""The one place where deepaas reaches into aiohttp's internals.

aiohttp's server offers no public hook for what ``deepaas-run`` needs
(:mod:`deepaas.api.protocol`): timeouts on a request's head and body, a
bound on open connections, answering the requests refused before any route
in JSON, and answering a request through another route.  What that takes of
aiohttp's private state is read and written here only, so that an upgrade
of aiohttp that changes it breaks one module, and
``tests/api/test_aiohttp_adapter.py`` says which internal is gone.
setup.cfg pins aiohttp to the minor versions tested.

The internals, and why each is used:

* ``RequestHandler._loop``: the loop's clock, for the time a connection has
  waited for a request's head.
* ``RequestHandler._request_count``: grows when the parser has read a
  request's head; a head has then arrived (header timeout).
* ``RequestHandler._request_in_progress`` and ``RequestHandler._messages``:
  a request is being answered, or parsed ones wait; the connection is not
  waiting for a head then.
* ``RequestHandler._waiter``: set while the connection waits for the next
  request; a head that has not come in time is refused only then.
* ``RequestHandler._force_close``: the connection is closing already.
* ``RequestHandler._current_request``: the request being answered (body
  timeout; the requests cut at shutdown).
* ``RequestHandler._manager``: the :class:`web.Server` that made the
  handler, which counts the requests refused before any route.
* ``BaseRequest._payload_writer`` (``output_size``): whether an answer was
  started, so that none is written over it.
* ``web.Server._connections``, ``web.Server._loop`` and
  ``web.Server._kwargs``: the open connections, and the arguments that a
  new :class:`RequestHandler` is made with (the bound on connections).
* the class of the :class:`web.Server` that ``AppRunner.setup()`` made,
  swapped for a subclass: the runner has no public way to choose it.
* ``BaseRequest._match_info``: set on a cloned request, as
  ``Application._handle`` does, to answer it through another route.

``RequestHandler.data_received``, ``handle_error`` and ``finish_response``
are overridden: public names, but their signatures are not documented.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

__all__ = [
    "WatchedRequestHandler",
    "answer_started",
    "connection_count",
    "current_request",
    "make_request_handler",
    "open_connections",
    "set_match_info",
    "swap_server_class",
]

_parent_data_received = RequestHandler.data_received


class WatchedRequestHandler(RequestHandler):  # type: ignore[misc]
    """aiohttp's protocol handler, knowing since when it waits for a head.

    ``head_since`` is the loop time since which the connection waits for a
    request's line and headers (None: it does not), ``received`` the bytes
    received on the connection.
    """

    head_since: float | None = None
    received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.head_since = self._loop.time()
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        count = self._request_count
        # The parent's method called directly: super() costs as much again
        # as the rest of this method, on every read (CPython 3.11).
        _parent_data_received(self, data)
        self.received += len(data)
        if self._request_count != count:
            self.head_since = None
        elif (
            self.head_since is None
            and not self._request_in_progress
            and not self._messages
        ):
            self.head_since = self._loop.time()

    def loop_time(self) -> float:
        """The loop's clock (the times of :attr:`head_since`)."""
        return float(self._loop.time())

    def waiting_for_request(self) -> bool:
        """Whether the connection waits for the next request's bytes."""
        return self._waiter is not None

    def closing(self) -> bool:
        """Whether the connection is closing already."""
        return bool(self._force_close)

    def requests_read(self) -> int:
        """How many request heads the connection has read."""
        return int(self._request_count)

    def web_server(self) -> Any:
        """The :class:`web.Server` that made this handler."""
        return self._manager


def current_request(handler: RequestHandler) -> web.BaseRequest | None:
    """The request that ``handler`` is answering, if any."""
    return handler._current_request  # type: ignore[no-any-return]


def answer_started(request: web.BaseRequest) -> bool:
    """Whether an answer to ``request`` was started (some bytes written)."""
    return getattr(request._payload_writer, "output_size", 0) > 0


def open_connections(server: web.Server) -> list[RequestHandler]:
    """The handlers of the server's open connections."""
    return list(server._connections)


def connection_count(server: web.Server) -> int:
    """How many connections the server has open."""
    return len(server._connections)


_Handler = TypeVar("_Handler", bound=RequestHandler)


def make_request_handler(server: web.Server, cls: type[_Handler]) -> _Handler:
    """A new protocol handler of class ``cls``, made as ``server`` makes its own."""
    return cls(server, loop=server._loop, **server._kwargs)


_Server = TypeVar("_Server", bound=web.Server)


def swap_server_class(server: web.Server, cls: type[_Server]) -> _Server:
    """``server`` (made by ``AppRunner.setup()``), now an instance of ``cls``.

    ``cls`` must subclass :class:`web.Server` and add no state that its
    ``__init__`` would set: that is never run.
    """
    if not issubclass(cls, type(server)):
        raise TypeError(f"{cls.__name__} does not subclass {type(server).__name__}")
    server.__class__ = cls
    assert isinstance(server, cls)
    return server


def set_match_info(request: web.Request, match_info: UrlMappingMatchInfo) -> None:
    """Route ``request`` (a clone) by ``match_info``, as the application does."""
    request._match_info = match_info
