"""The access log: one line per request, as DEEPaaS 2.x had.

aiohttp calls its access-log hook once an answer is written, with the time
the request took.  :class:`AccessLogger` is that hook: it writes the line
on the logger ``aiohttp.access`` at INFO (DEEPaaS 2.x's logger and level,
so log configurations written for it keep working).  The line carries the
request id of :mod:`deepaas.api.request_id`; docs/operating.md shows it.
:func:`access_log_options` gives ``web.AppRunner`` what it needs.  When the
logger would drop INFO lines (``--log-level WARNING``), aiohttp does not
call the hook at all.  (Requests are counted for ``/metrics`` by the
routes, :mod:`deepaas.api.request_metrics`, not here.)
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from deepaas.api.keys import SETTINGS
from deepaas.api.request_id import REQUEST_ID_HEADER

ACCESS_LOGGER = "aiohttp.access"
_LINE = '%s "%s %s HTTP/%d.%d" %d %d "%s" "%s" %.6f %s'


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access-log hook: one line per answered request."""

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(
        self, request: web.BaseRequest, response: web.StreamResponse, time: float
    ) -> None:
        try:
            logger = self.logger
            if logger.isEnabledFor(logging.INFO):
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
            self.logger.exception("cannot log a request")


def access_log_options(app: web.Application) -> dict[str, Any]:
    """Keyword arguments of ``web.AppRunner`` that log each request (or not).

    Without the access log, aiohttp's hook stays off and costs nothing.
    """
    if not app[SETTINGS].access_log:
        return {"access_log": None}
    return {
        "access_log_class": AccessLogger,
        "access_log": logging.getLogger(ACCESS_LOGGER),
    }
