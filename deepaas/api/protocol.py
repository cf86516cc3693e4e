"""JSON answers for requests that aiohttp rejects before any route runs.

A request line or header that is too long, a garbage method or a bad
Content-Length is answered by aiohttp's protocol handler itself, in plain
text, before the application (and its JSON error answers) sees the request.
Clients of the DEEPaaS API parse every error body as JSON, so the server
built by ``deepaas-run`` swaps in a request handler that answers those
errors with the same ``{"message": ...}`` body as every other error.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


class _JsonErrorRequestHandler(RequestHandler):  # type: ignore[misc]
    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # The parent logs the error and refuses when a response was started.
        super().handle_error(request, status, exc, message)
        if status >= 500:
            text = "internal server error"
        else:
            text = (message or HTTPStatus(status).phrase)[:300]
        response = web.Response(
            status=status,
            body=json.dumps({"message": text}).encode(),
            content_type="application/json",
        )
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


def answer_protocol_errors_in_json(runner: web.AppRunner) -> None:
    """Make a set-up runner answer malformed HTTP with JSON error bodies."""
    server = runner.server
    if server is None:
        raise RuntimeError("call this after runner.setup()")
    server.__class__ = _JsonErrorServer
