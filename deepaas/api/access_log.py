"""The access log: one line per request, as DEEPaaS 2.x had.

aiohttp calls its access-log hook once an answer is written, with the time
the request took.  :class:`RequestObserver` is that hook: it counts the
request for ``/metrics`` (:mod:`deepaas.api.metrics`) and writes the line
on the logger ``aiohttp.access`` at INFO (DEEPaaS 2.x's logger and level,
so log configurations written for it keep working).  The line carries the
request id of :mod:`deepaas.api.request_id`; docs/operating.md shows it.
:func:`observer_options` gives ``web.AppRunner`` what it needs.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from deepaas.api.keys import SETTINGS
from deepaas.api.metrics import METRICS, RequestMetrics
from deepaas.api.request_id import REQUEST_ID_HEADER

ACCESS_LOGGER = "aiohttp.access"
_LINE = '%s "%s %s HTTP/%d.%d" %d %d "%s" "%s" %.6f %s'


class RequestObserver(AbstractAccessLogger):
    """aiohttp's access-log hook: count each answered request, log its line.

    aiohttp makes one per connection and calls :meth:`log` after each answer
    is written.  :func:`observer_options` binds ``metrics`` and ``lines`` on a
    subclass per application.
    """

    metrics: RequestMetrics | None = None
    lines: bool = True

    @property
    def enabled(self) -> bool:
        return self.metrics is not None or (
            self.lines and self.logger.isEnabledFor(logging.INFO)
        )

    def log(
        self, request: web.BaseRequest, response: web.StreamResponse, time: float
    ) -> None:
        try:
            if self.metrics is not None:
                self.metrics.observe(request, response, time)
            logger = self.logger
            if self.lines and logger.isEnabledFor(logging.INFO):
                headers = request.headers
                version = request.version
                args = (
                    request.remote or "-",
                    request.method,
                    request.raw_path,
                    version.major,
                    version.minor,
                    response.status,
                    response.body_length,
                    headers.get("Referer", "-"),
                    headers.get("User-Agent", "-"),
                    time,
                    response.headers.get(REQUEST_ID_HEADER, "-"),
                )
                # logger.info() less its search of the caller's frame (the
                # caller is always this method): a fifth of the line's cost.
                logger.handle(
                    logger.makeRecord(
                        logger.name,
                        logging.INFO,
                        __file__,
                        0,
                        _LINE,
                        args,
                        None,
                        "log",
                    )
                )
        except Exception:  # never let bookkeeping break serving
            self.logger.exception("cannot log or count a request")


def observer_options(app: web.Application) -> dict[str, Any]:
    """Keyword arguments of ``web.AppRunner`` that log and count each request.

    With neither the access log nor the metrics, aiohttp's hook stays off
    and costs nothing.
    """
    settings = app[SETTINGS]
    metrics = app.get(METRICS)
    if metrics is None and not settings.access_log:
        return {"access_log": None}
    observer = type(
        "RequestObserver",
        (RequestObserver,),
        {
            "metrics": metrics.requests if metrics is not None else None,
            "lines": settings.access_log,
        },
    )
    return {
        "access_log_class": observer,
        "access_log": logging.getLogger(ACCESS_LOGGER),
    }
