"""What deepaas-run's HTTP server does before and around the application.

aiohttp's protocol handler answers some requests itself, in plain text,
before any route runs: a request line or header that is too long, a garbage
method, a bad Content-Length, and a request target that no route can match
(``OPTIONS *``, ``CONNECT host:port``).  Clients of the DEEPaaS API parse
every error body as JSON, so the server built by ``deepaas-run`` answers
those with the same ``{"message": ...}`` body as every other error.

It also holds the server to limits that a client on a real network cannot
be trusted to keep (:class:`ServerLimits`):

* a client has ``header_timeout`` seconds to send a request's line and
  headers (from connecting, or from its first byte on a kept-alive
  connection), else it gets 408 and the connection is closed;
* a body that stops arriving for ``body_timeout`` seconds is answered 408;
* at most ``max_connections`` connections are open; one more is answered
  503 at once and closed, so that file descriptors stay for the rest;
* an idle kept-alive connection is closed after ``keepalive_timeout``.

The timeouts are checked by one sweep per fraction of a second over the
open connections, so a request pays nothing for them but a counter.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import resource
import time
from collections.abc import AsyncIterator, Coroutine
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    ContentLengthError,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)
from aiohttp.web_protocol import RequestHandler

from deepaas._background import running_beside
from deepaas.api._aiohttp_adapter import (
    WatchedRequestHandler,
    answer_started,
    connection_count,
    current_request,
    make_request_handler,
    open_connections,
    swap_server_class,
)
from deepaas.api.errors import error_answer, error_bytes
from deepaas.api.request_metrics import REQUEST_METRICS, RequestMetrics
from deepaas.exceptions import HeadersTimeout, ProtocolError, ServerBusy

LOG = logging.getLogger("deepaas.run")

#: File descriptors kept for the rest of the server (worker sockets, upload
#: files, the training store, logs) when the connection bound is derived
#: from the process's limit on open files.
FD_RESERVE = 64


class BodyReadTimeout(asyncio.TimeoutError):
    """A request body stopped arriving; raised where the body is read (408)."""


@dataclasses.dataclass(frozen=True)
class ServerLimits:
    """Timeouts (seconds, 0: none) and the bound on open connections."""

    header_timeout: float = 30.0
    body_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    max_connections: int = 1000

    def __post_init__(self) -> None:
        for option, value in (
            ("--header-timeout", self.header_timeout),
            ("--body-timeout", self.body_timeout),
            ("--keepalive-timeout", self.keepalive_timeout),
        ):
            if value < 0:
                raise ValueError(f"{option} must be >= 0 (got {value})")
        if self.max_connections < 1:
            raise ValueError(
                f"--max-connections must be >= 1 (got {self.max_connections})"
            )

    @property
    def sweep_interval(self) -> float:
        timeouts = [t for t in (self.header_timeout, self.body_timeout) if t]
        return min([1.0] + [t / 4 for t in timeouts])


_parent_finish_response = RequestHandler.finish_response


class _HardenedRequestHandler(WatchedRequestHandler):
    """aiohttp's protocol handler, answering in JSON and watched for timeouts."""

    body_request: object = None  # the request whose body is watched
    body_mark = 0
    body_since = 0.0

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status < 500 and isinstance(exc, HttpProcessingError):
            # A request the parser refused: the client's fault, worth one
            # line.  aiohttp's own log of it is a traceback whose message
            # quotes the offending bytes (a 100 KB header, a token in it).
            text = _describe_refusal(exc, status)
            quiet = self.requests_read() == 1 and isinstance(exc, BadHttpMethod)
            self.logger.log(
                logging.DEBUG if quiet else logging.WARNING,
                "refused a malformed request from %s: %d, %s",
                request.remote,
                status,
                text,
            )
            if request.writer.output_size > 0:
                raise ConnectionError("an answer was started already")
        else:
            # The parent logs the error and refuses when a response was started.
            super().handle_error(request, status, exc, message)
            text = (
                "internal server error" if status >= 500 else HTTPStatus(status).phrase
            )
        self.count_refused(request, status)
        response = error_answer(ProtocolError(text, status=status))
        response.force_close()
        return response

    def finish_response(
        self, request: Any, resp: web.StreamResponse, start_time: float | None
    ) -> Coroutine[Any, Any, tuple[web.StreamResponse, bool]]:
        # Only aiohttp's own refusals reach here as HTTPException (the
        # routes answer theirs in JSON): a target no route can match.  Not
        # a coroutine itself: the parent's is returned, one layer less.  A
        # plain Response (the routes' answers) skips the isinstance test.
        if (
            resp.__class__ is not web.Response
            and isinstance(resp, web.HTTPException)
            and resp.status >= 400
        ):
            resp = _json_refusal(request, resp)
            self.count_refused(request, resp.status)
        return _parent_finish_response(self, request, resp, start_time)  # type: ignore[no-any-return]

    def count_refused(self, request: Any, status: int) -> None:
        """Count for ``/metrics`` a request refused before any route took it."""
        requests = getattr(self.web_server(), "request_metrics", None)
        if requests is not None:
            requests.count_refused(str(getattr(request, "method", "")), status)

    def sweep(self, now: float, limits: ServerLimits) -> str | None:
        """Close the connection when it broke a timeout; say which one."""
        if self.transport is None or self.closing():
            return None
        since = self.head_since
        if (
            since is not None
            and limits.header_timeout
            and self.waiting_for_request()
            and now - since > limits.header_timeout
        ):
            self.transport.write(
                error_bytes(
                    HeadersTimeout(
                        "the request's headers did not arrive within "
                        f"--header-timeout ({limits.header_timeout:g} s)"
                    )
                )
            )
            self.force_close()
            return "header"
        request = current_request(self)
        if request is None or not limits.body_timeout or request.content.is_eof():
            return None
        if self.body_request is not request or self.received != self.body_mark:
            self.body_request, self.body_mark = request, self.received
            self.body_since = now
        elif now - self.body_since > limits.body_timeout:
            self.close()  # answered by the handler, then closed
            request.content.set_exception(
                BodyReadTimeout(
                    "the request body stopped arriving for more than "
                    f"--body-timeout ({limits.body_timeout:g} s)"
                )
            )
            self.body_request = None
            return "body"
        return None

    def answer_unfinished(self, message: str) -> bool:
        """Answer 503 to a request still in progress (shutdown), and close.

        Nothing is written when its handler already started an answer.
        """
        request = current_request(self)
        if request is None or self.transport is None:
            return False
        if not answer_started(request):
            self.transport.write(error_bytes(ServerBusy(message)))
        self.force_close()
        return True


#: What a client did wrong, by the parser's exception, in words that quote
#: none of its bytes.
_REFUSALS: tuple[tuple[type[HttpProcessingError], str], ...] = (
    (InvalidHeader, "a header is malformed"),
    (BadHttpMethod, "not an HTTP request, or an invalid method"),
    (BadStatusLine, "the request line is malformed"),
    (InvalidURLError, "the request target is malformed"),
    (ContentLengthError, "the body does not match its Content-Length"),
    (TransferEncodingError, "the body's transfer encoding is malformed"),
)


def _describe_refusal(exc: HttpProcessingError, status: int) -> str:
    """Why the parser refused a request, without the request's content.

    llhttp's messages are a fixed phrase, then a colon and a new line, then
    the offending bytes: the phrase alone is kept.  Other messages may
    quote the bytes on the same line, so they are named by their kind.
    """
    if isinstance(exc, LineTooLong):
        return f"a request line or header is longer than {exc.args[1]} bytes"
    phrase, sep, _ = str(exc.message).partition(":\n")
    if sep and phrase.isprintable() and len(phrase) <= 80:
        return phrase
    for kind, text in _REFUSALS:
        if isinstance(exc, kind):
            return text
    return f"{HTTPStatus(status).phrase.lower()}: the request is malformed"


def _json_refusal(request: Any, resp: web.HTTPException) -> web.Response:
    if resp.status == 404:
        message = f"no such path: {request.raw_path}"
    elif resp.status == 405:
        message = f"{request.raw_path} does not answer {request.method}"
    else:
        message = resp.reason
    allow = resp.headers.get("Allow")
    headers = {"Allow": allow} if allow else None
    return error_answer(ProtocolError(message, status=resp.status, headers=headers))


class _Refusal(asyncio.Protocol):
    """A connection over the bound: answered 503 at once, closed soon after.

    The answer is followed by the end of the stream, and what the client
    sends meanwhile is read and dropped for a moment: closing with unread
    data would reset the connection, and the client could lose the answer.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(
            error_bytes(
                ServerBusy(
                    f"the server has {self._limit} connections open "
                    "(--max-connections); retry later"
                )
            )
        )
        transport.write_eof()
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(0.25, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        self._timer.cancel()
        self._transport.close()
        return False


class _HardenedServer(web.Server):
    limits = ServerLimits()
    #: Where requests refused before routing are counted (None: nowhere).
    request_metrics: RequestMetrics | None = None
    refused = 0  # connections refused over the bound since the last report
    # Protocols made for accepted connections not yet registered: the loop
    # accepts a burst of connections before any of them is set up.
    opening = 0

    def __call__(self) -> asyncio.Protocol:  # type: ignore[override]
        if connection_count(self) + self.opening >= self.limits.max_connections:
            self.refused += 1
            return _Refusal(self.limits.max_connections)
        self.opening += 1
        return make_request_handler(self, _HardenedRequestHandler)

    def connection_made(
        self, handler: RequestHandler, transport: asyncio.Transport
    ) -> None:
        self.opening = max(0, self.opening - 1)
        super().connection_made(handler, transport)


def harden_server(runner: web.AppRunner, limits: ServerLimits) -> None:
    """Make a set-up runner answer malformed HTTP in JSON and keep ``limits``.

    The requests it refuses before any route are counted in the app's
    request metrics, when it has them.

    The runner must have been made with ``keepalive_timeout`` from the
    limits (see :func:`runner_options`); the timeouts are enforced by
    :func:`watch_connections`.
    """
    server = runner.server
    if server is None:
        raise RuntimeError("call this after runner.setup()")
    server = swap_server_class(server, _HardenedServer)
    server.limits = limits
    server.request_metrics = runner.app.get(REQUEST_METRICS)


def runner_options(limits: ServerLimits) -> dict[str, Any]:
    """Keyword arguments of :class:`aiohttp.web.AppRunner` for these limits."""
    return {"keepalive_timeout": limits.keepalive_timeout}


@contextlib.asynccontextmanager
async def watch_connections(runner: web.AppRunner) -> AsyncIterator[None]:
    """Enforce the header and body timeouts while the block runs.

    Connections refused over the bound are logged once per minute, with
    their count, rather than once each.
    """
    server = runner.server
    if not isinstance(server, _HardenedServer):
        raise RuntimeError("call harden_server() first")
    async with running_beside(_sweep(server)):
        yield


async def _sweep(server: _HardenedServer) -> None:
    limits = server.limits
    loop = asyncio.get_running_loop()
    counts = {"header": 0, "body": 0}
    reported = float("-inf")  # the first refusals are logged at once
    while True:
        await asyncio.sleep(limits.sweep_interval)
        server.opening = 0  # one whose transport failed is not counted forever
        now = loop.time()
        for handler in open_connections(server):
            if isinstance(handler, _HardenedRequestHandler):
                broke = handler.sweep(now, limits)
                if broke is not None:
                    counts[broke] += 1
        if time.monotonic() - reported >= 60 and (
            server.refused or any(counts.values())
        ):
            reported = time.monotonic()
            LOG.warning(
                "in the last minute: %d connections refused (--max-connections "
                "%d), %d closed by --header-timeout, %d requests answered 408 "
                "by --body-timeout",
                server.refused,
                limits.max_connections,
                counts["header"],
                counts["body"],
            )
            server.refused = 0
            counts = {"header": 0, "body": 0}


async def answer_in_progress(
    runner: web.AppRunner, timeout: float, message: str
) -> int:
    """Let requests in progress finish for ``timeout`` s; answer the rest 503.

    Idle connections are closed at once; a connection whose request ends in
    time is closed after its answer.  Returns how many requests were cut.
    """
    server = runner.server
    if server is None:
        return 0
    server.pre_shutdown()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and any(
        current_request(handler) is not None for handler in server.connections
    ):
        await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))
    cut = 0
    for handler in server.connections:
        if isinstance(handler, _HardenedRequestHandler):
            cut += handler.answer_unfinished(message)
    return cut


def connection_limit(requested: int) -> int:
    """The bound on open connections that the limit on open files allows.

    The soft limit is raised to the hard one when it is lower (the usual
    1024 of a login shell); the bound keeps :data:`FD_RESERVE` descriptors,
    and a quarter of a small limit, for the rest of the server.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    if soft == resource.RLIM_INFINITY:
        return requested
    allowed = max(1, soft - max(FD_RESERVE, soft // 4))
    if allowed < requested:
        LOG.warning(
            "serving at most %d connections, not --max-connections %d: the "
            "process may open %d files (ulimit -n)",
            allowed,
            requested,
            soft,
        )
    return min(requested, allowed)


class RateLimitedLoopErrors:
    """A loop exception handler that logs each kind of error once per interval.

    Out of file descriptors, the loop reports every failed ``accept()``;
    logging each with its traceback filled 27 MB of log in 10 s.
    """

    def __init__(self, interval: float = 10.0) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(
        self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]
    ) -> None:
        key = str(context.get("message", ""))
        exc = context.get("exception")
        if exc is not None:
            key += f" {type(exc).__name__} {getattr(exc, 'errno', '')}"
        now = time.monotonic()
        if now - self._last.get(key, -self._interval) < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            context = dict(context)
            context["message"] = (
                f"{context.get('message', '')} (and {suppressed} more like it "
                f"in the last {self._interval:g} s)"
            )
        loop.default_exception_handler(context)
