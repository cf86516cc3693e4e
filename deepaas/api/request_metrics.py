"""Request counts and durations for ``/metrics``, counted where requests are.

Each route's one wrapper (``routing.route_handler``) is given a
:class:`RouteCounter` when the app is built: it knows the route's endpoint
and model labels already (declared in the route table,
:class:`~deepaas.api.routes.Route`), so counting an answered request is a look-up in
a small dictionary and the append of its duration to a list.  The
durations are sorted into the histogram's buckets later, many at a time
(:meth:`Series.fold`: one sort and a binary search per bucket), when
Prometheus scrapes and every few seconds: one bucket search per request
cost more than the rest of the counting together.  No lock is needed:
requests, folds and scrapes all run on the event loop.  The duration runs
from the route taking the request to its answer being ready to write.

Requests that no route ever sees (a malformed request line, headers too
long, ``OPTIONS *``) are refused by the HTTP server itself
(:mod:`deepaas.api.protocol`), which counts them with
:meth:`RequestMetrics.count_refused`: they appear in ``deepaas_requests``
with the endpoint ``other`` and have no duration.

Label values are bounded whatever clients send: a model name counts only
when it is served, an unknown method is ``other``, and the last route (the
one that answers 404 and 405) is the endpoint ``other``.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections.abc import AsyncIterator, Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from deepaas._background import running_beside
from deepaas.api.routes import Route

#: Upper bounds (seconds) of the request-duration buckets: from a
#: sub-millisecond in-process call to a long model call.
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    float("inf"),
)
#: Methods that get their own label value; any other is ``other``.
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
#: The endpoint label of requests that no route describes.
OTHER = "other"
#: Seconds between two folds of the durations not yet in buckets (which
#: bounds the memory they take between scrapes).
FOLD_INTERVAL = 5.0

Labels = tuple[str, str, str, str]  # model, endpoint, method, status


class Series:
    """The counts of one label set: a histogram, and durations to add to it."""

    __slots__ = ("cumulative", "durations", "total")

    def __init__(self) -> None:
        #: Durations counted but not yet in :attr:`cumulative` and :attr:`total`.
        self.durations: list[float] = []
        #: Requests at or under each bound of DURATION_BUCKETS (the last: all).
        self.cumulative = [0] * len(DURATION_BUCKETS)
        self.total = 0.0

    def fold(self) -> None:
        """Move the pending durations into the buckets and the sum."""
        durations = self.durations
        if not durations:
            return
        durations.sort()
        for index, bound in enumerate(DURATION_BUCKETS):
            self.cumulative[index] += bisect.bisect_right(durations, bound)
        self.total += math.fsum(durations)
        durations.clear()


class RouteCounter:
    """Counts the answers of one route (see :meth:`RequestMetrics.for_route`).

    :attr:`known` maps an answer's key (:attr:`by_method`: ``(method,
    status)``, else the status alone) to the ``append`` of its durations,
    for the answers whose labels need nothing else from the request: the
    route's wrapper appends to it itself.  Other answers (a route whose
    model is the path's ``{name}``, an unusual method) take :meth:`count`.
    """

    __slots__ = (
        "_endpoint",
        "_metrics",
        "_model",
        "_named",
        "_series",
        "by_method",
        "known",
    )

    def __init__(
        self,
        metrics: RequestMetrics,
        endpoint: str,
        model: str,
        *,
        named: bool = False,
        by_method: bool = True,
    ) -> None:
        self._metrics = metrics
        self._endpoint = endpoint
        self._model = model
        self._named = named  # the model is the path's {name}
        #: Whether answers differ by method (a GET route also answers HEAD).
        self.by_method = by_method
        # (method, status[, model]) -> the series of those labels.
        self._series: dict[tuple[object, ...], Series] = {}
        self.known: dict[object, Callable[[float], None]] = {}

    def count(self, request: web.Request, status: int, seconds: float) -> None:
        """Count one answer of ``status`` that took ``seconds``."""
        method = request.method
        if method not in METHODS:
            method = OTHER
        if self._named:
            model = request.match_info.get("name", "")
            key: tuple[object, ...] = (method, status, model)
        else:
            model = self._model
            key = (method, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self._metrics.series_of(
                model, self._endpoint, method, status
            )
            if not self._named and method == request.method:
                known_key = (method, status) if self.by_method else status
                self.known[known_key] = series.durations.append
        series.durations.append(seconds)


class RequestMetrics:
    """Request counts and durations per model, endpoint, method and status."""

    def __init__(self, models: Iterable[str]) -> None:
        self._models = frozenset(models)
        self.series: dict[Labels, Series] = {}
        # (method, status) -> requests refused before any route took them.
        self.refused: dict[tuple[str, str], int] = {}

    def for_route(self, route: Route | None) -> RouteCounter:
        """The counter of ``route`` (None: the last route, which takes every
        other request)."""
        if route is None:
            return RouteCounter(self, OTHER, "")
        by_method = route.method == "GET"  # and HEAD; others answer one method
        if route.model and route.model in self._models:  # a model's own route
            return RouteCounter(self, route.label, route.model, by_method=by_method)
        return RouteCounter(
            self, route.label, "", named=route.per_model, by_method=by_method
        )

    def series_of(self, model: str, endpoint: str, method: str, status: int) -> Series:
        """The series of these labels (a name no model has counts as "")."""
        labels = (model if model in self._models else "", endpoint, method, str(status))
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = Series()
        return series

    def count_refused(self, method: str, status: int) -> None:
        """Count a request that the server refused before routing it."""
        key = (method if method in METHODS else OTHER, str(status))
        self.refused[key] = self.refused.get(key, 0) + 1

    def fold(self) -> None:
        """Sort every pending duration into its histogram."""
        for series in self.series.values():
            series.fold()

    async def fold_periodically(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: fold every :data:`FOLD_INTERVAL` s while the app runs."""

        async def fold_forever() -> None:
            while True:
                await asyncio.sleep(FOLD_INTERVAL)
                self.fold()

        async with running_beside(fold_forever()):
            yield

    def collect(self) -> Iterator[Metric]:
        """The request counter and the duration histogram, from the same counts."""
        self.fold()
        names = ("model", "endpoint", "method", "status")
        total = CounterMetricFamily(
            "deepaas_requests", "HTTP requests answered.", labels=names
        )
        duration = HistogramMetricFamily(
            "deepaas_request_duration_seconds",
            "Time from a route taking a request to its answer being ready.",
            labels=names,
        )
        refused = {
            ("", OTHER, method, status): n
            for (method, status), n in self.refused.items()
        }
        for labels, series in sorted(self.series.items()):
            buckets = [
                (bucket_label(bound), float(count))
                for bound, count in zip(
                    DURATION_BUCKETS, series.cumulative, strict=True
                )
            ]
            answered = series.cumulative[-1]
            total.add_metric(labels, answered + refused.pop(labels, 0))
            duration.add_metric(labels, buckets, series.total)
        for labels, count in sorted(refused.items()):
            total.add_metric(labels, count)
        yield total
        yield duration


def bucket_label(value: float) -> str:
    """A bucket's upper bound as Prometheus writes it."""
    return "+Inf" if value == float("inf") else repr(value)


#: Each application's request counts, made before its routes when
#: ``/metrics`` is served.
REQUEST_METRICS = web.AppKey("deepaas_request_metrics", RequestMetrics)
