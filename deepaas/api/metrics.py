"""Prometheus metrics of one server, served at ``GET /metrics``.

Everything is counted in the API process, which owns the HTTP server, the
executors, their worker pools and queues: worker processes count nothing
themselves, so nothing is lost when one dies and nothing needs merging.

* Per request, :meth:`RequestMetrics.observe` (called by the access-log hook
  of :mod:`deepaas.api.access_log` once the answer is written) adds the
  duration to one histogram per model, endpoint, method and status: a look-up
  in a dictionary and two additions, with no lock, because requests and
  scrapes all run on the event loop.
* Everything else (workers, queues, restarts, timeouts, batch sizes,
  trainings, GPUs) is read from the engine's live state when Prometheus
  scrapes, by :class:`EngineCollector`: nothing is updated per request.

Each application has its own ``CollectorRegistry``: prometheus-client's
global default registry is never used, so several applications (tests
build many) never share a number.  docs/operating.md lists the metrics.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, cast

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from deepaas import __version__
from deepaas.api.routing import add_route
from deepaas.engine.devices import TRAINING_KEY
from deepaas.engine.execution import Executor

LOG = logging.getLogger(__name__)

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
#: Upper bounds of the batch-size buckets.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, float("inf"))
#: Methods that get their own label value; any other is ``other``.
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
TRAINING_STATUSES = ("queued", "running", "done", "error", "cancelled")

_MODEL_PATH = re.compile(r"/v2/models/([^/{}]+)(/.*)?")

Labels = tuple[str, str, str, str]  # model, endpoint, method, status


class RequestMetrics:
    """Request counts and durations per model, endpoint, method and status.

    Label values are bounded whatever clients send: a model name counts only
    when it is served, an unknown method is ``other``, and a path that no
    route takes is the endpoint ``other``.
    """

    def __init__(self, models: Iterable[str], *, base_path: str = "") -> None:
        self._models = frozenset(models)
        self._base_path = base_path
        # Label tuple -> bucket counts (not cumulative) followed by the sum.
        self.series: dict[Labels, list[float]] = {}
        # (route, model name in the path, method, status) -> its series.
        self._cache: dict[tuple[Any, Any, str, int], list[float]] = {}
        self._endpoints: dict[Any, tuple[str, str]] = {}

    def observe(
        self, request: web.BaseRequest, response: web.StreamResponse, seconds: float
    ) -> None:
        """Count one answered request that took ``seconds``."""
        try:
            match_info = cast(web.Request, request).match_info
        except (AssertionError, AttributeError):  # refused before routing
            match_info = None
        route = name = None
        if match_info is not None:
            route = match_info.route
            name = match_info.get("name")
            if name is not None and name not in self._models:
                name = None  # never a label value a client chose
        method = request.method
        if method not in METHODS:
            method = "other"
        key = (route, name, method, response.status)
        series = self._cache.get(key)
        if series is None:
            series = self._series(route, name, method, response.status)
            self._cache[key] = series
        series[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        series[-1] += seconds

    def _series(
        self, route: Any, name: str | None, method: str, status: int
    ) -> list[float]:
        endpoint, model = self._endpoint(route)
        labels = (name or model, endpoint, method, str(status))
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0.0] * (len(DURATION_BUCKETS) + 1)
        return series

    def _endpoint(self, route: Any) -> tuple[str, str]:
        """The endpoint label of a route (its path template) and its fixed model."""
        found = self._endpoints.get(route)
        if found is not None:
            return found
        endpoint, model = "other", ""
        resource = getattr(route, "resource", None)
        canonical = getattr(resource, "canonical", None)
        if canonical and not canonical.startswith(f"{self._base_path}/{{path"):
            path = canonical[len(self._base_path) :] if self._base_path else canonical
            path = path.rstrip("/") or "/"
            match = _MODEL_PATH.fullmatch(path)
            if match and match[1] in self._models:
                # A served model's own predict route: label it like {name}.
                model = match[1]
                path = f"/v2/models/{{name}}{match[2] or ''}"
            endpoint = path
        self._endpoints[route] = (endpoint, model)
        return endpoint, model

    def collect(self) -> Iterator[Metric]:
        """The request counter and the duration histogram, from the same counts."""
        names = ("model", "endpoint", "method", "status")
        total = CounterMetricFamily(
            "deepaas_requests", "HTTP requests answered.", labels=names
        )
        duration = HistogramMetricFamily(
            "deepaas_request_duration_seconds",
            "Time from reading a request to the end of its answer.",
            labels=names,
        )
        for labels, series in sorted(self.series.items()):
            buckets, running = [], 0.0
            for bound, count in zip(DURATION_BUCKETS, series, strict=False):
                running += count
                buckets.append((_bound(bound), running))
            total.add_metric(labels, running)
            duration.add_metric(labels, buckets, series[-1])
        yield total
        yield duration


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


class EngineCollector(Collector):
    """Reads the executors, the trainings and the GPU plan at scrape time."""

    def __init__(
        self,
        executors: Mapping[str, Executor],
        *,
        requests: RequestMetrics | None = None,
        gpu_plan: Mapping[str, Any] | None = None,
    ) -> None:
        self._executors = executors
        self._requests = requests
        self._gpu_plan = gpu_plan or {}
        #: (model, status) -> count, refreshed by :meth:`refresh_trainings`.
        self.trainings: dict[tuple[str, str], int] | None = None

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "deepaas_info", "The deepaas version serving.", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info
        if self._requests is not None:
            yield from self._requests.collect()
        yield from self._engine()
        yield from self._trainings()
        yield from self._gpus()

    def _engine(self) -> Iterator[Metric]:
        gauges = {
            key: GaugeMetricFamily(f"deepaas_{name}", text, labels=["model"])
            for key, name, text in (
                ("workers", "workers", "Workers (or in-process slots) of each model."),
                ("ready", "workers_ready", "Workers warm and able to take calls."),
                ("busy", "workers_busy", "Workers running a call now."),
                ("warming", "workers_warming", "Workers starting or warming up."),
                ("queued", "queue_depth", "Calls waiting for a worker or a batch."),
                (
                    "stalled",
                    "stalled",
                    "1 while no worker has been free to take a call for longer "
                    "than --ready-stall-timeout (a hung model), else 0.",
                ),
            )
        }
        restarts = CounterMetricFamily(
            "deepaas_worker_restarts",
            "Worker processes restarted, by cause: timeout (--predict-timeout), "
            "signal (e.g. SIGSEGV, SIGKILL), exit (the process exited), "
            "start_failed (a restarted worker did not come up).",
            labels=["model", "cause"],
        )
        timeouts = CounterMetricFamily(
            "deepaas_predict_timeouts",
            "Predictions answered 504 for exceeding --predict-timeout.",
            labels=["model"],
        )
        batches = HistogramMetricFamily(
            "deepaas_batch_size",
            "Requests per predict_batch call, for models that batch.",
            labels=["model"],
        )
        for name, executor in self._executors.items():
            status = executor.status()
            for key, gauge in gauges.items():
                gauge.add_metric([name], float(status.get(key, 0)))
            stats = getattr(executor, "stats", None)
            if stats is None:
                continue
            for cause in ("timeout", "signal", "exit", "start_failed"):
                restarts.add_metric([name, cause], stats.restarts.get(cause, 0))
            timeouts.add_metric([name], stats.timeouts)
            description = getattr(executor, "description", None)
            if description is not None and description.batching:
                buckets, running = [], 0
                for bound in BATCH_BUCKETS:
                    running = sum(
                        n for size, n in stats.batch_sizes.items() if size <= bound
                    )
                    buckets.append((_bound(float(bound)), running))
                total = sum(size * n for size, n in stats.batch_sizes.items())
                batches.add_metric([name], buckets, total)
        yield from gauges.values()
        yield restarts
        yield timeouts
        yield batches

    def _trainings(self) -> Iterator[Metric]:
        if self.trainings is None:
            return
        gauge = GaugeMetricFamily(
            "deepaas_trainings",
            "Trainings recorded in the state directory, by model and status.",
            labels=["model", "status"],
        )
        models = sorted({m for m, _ in self.trainings} | set(self._executors))
        for model in models:
            for status in TRAINING_STATUSES:
                gauge.add_metric(
                    [model, status], self.trainings.get((model, status), 0)
                )
        yield gauge

    def _gpus(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "deepaas_gpu_assigned",
            "Processes placed on each GPU: prediction workers (role predict) "
            "and the GPUs reserved for a model's trainings (role train).",
            labels=["model", "gpu", "role"],
        )
        counts: dict[tuple[str, str, str], int] = {}
        for key, envs in self._gpu_plan.items():
            if key.startswith(TRAINING_KEY):
                model, role, envs = key[len(TRAINING_KEY) :], "train", [envs]
            else:
                model, role = key, "predict"
            for env in envs or []:
                visible = (env or {}).get("CUDA_VISIBLE_DEVICES", "")
                for gpu in filter(None, (g.strip() for g in visible.split(","))):
                    if gpu != "-1":
                        counts[model, gpu, role] = counts.get((model, gpu, role), 0) + 1
        for labels, count in sorted(counts.items()):
            gauge.add_metric(list(labels), count)
        yield gauge


class ServerMetrics:
    """The registry of one application and what feeds it."""

    def __init__(
        self,
        executors: Mapping[str, Executor],
        *,
        base_path: str = "",
        trainings: Any = None,
        gpu_plan: Mapping[str, Any] | None = None,
    ) -> None:
        self.requests = RequestMetrics(executors, base_path=base_path)
        self.engine = EngineCollector(
            executors, requests=self.requests, gpu_plan=gpu_plan
        )
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.engine)
        # The API process's own CPU, memory and open files (Linux /proc).
        ProcessCollector(registry=self.registry)
        self._trainings = trainings

    async def refresh_trainings(self) -> None:
        """Count the recorded trainings (an SQLite query, off the event loop)."""
        store = getattr(self._trainings, "store", None)
        if store is None:
            return
        try:
            self.engine.trainings = await asyncio.to_thread(store.count_by_status)
        except Exception as exc:  # a scrape must not fail for the trainings
            LOG.warning("metrics: cannot count the trainings: %s", exc)

    async def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format the scraper asks for, and its media type."""
        await self.refresh_trainings()
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


METRICS = web.AppKey("deepaas_metrics", ServerMetrics)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition (text, or OpenMetrics when the scraper asks)."""
    body, content_type = await request.app[METRICS].exposition(
        request.headers.get("Accept")
    )
    return web.Response(body=body, headers={"Content-Type": content_type})


def setup(
    app: web.Application,
    executors: Mapping[str, Executor],
    *,
    base_path: str,
    trainings: Any = None,
    gpu_plan: Mapping[str, Any] | None = None,
) -> None:
    """Serve ``/metrics`` and keep this application's registry on it."""
    app[METRICS] = ServerMetrics(
        executors, base_path=base_path, trainings=trainings, gpu_plan=gpu_plan
    )
    add_route(app, "GET", "/metrics", metrics)
