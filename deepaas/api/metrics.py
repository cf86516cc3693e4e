"""Prometheus metrics of one server, served at ``GET /metrics``.

Everything is counted in the API process, which owns the HTTP server, the
executors, their worker pools and queues: worker processes count nothing
themselves, so nothing is lost when one dies and nothing needs merging.

* Requests are counted by each route's wrapper as it answers
  (:mod:`deepaas.api.request_metrics`): a look-up in a dictionary and the
  append of the duration, sorted into buckets later, many at a time; no
  lock, because requests, folds and scrapes all run on the event loop.
* Everything else (workers, queues, restarts, timeouts, batch sizes,
  trainings, GPUs) is read from the engine's live state when Prometheus
  scrapes, by :class:`EngineCollector`: nothing is updated per request.

Each application has its own ``CollectorRegistry``: prometheus-client's
global default registry is never used, so several applications (tests
build many) never share a number.  docs/operating.md lists the metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

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
from deepaas.api import openapi
from deepaas.api.request_metrics import REQUEST_METRICS, RequestMetrics, bucket_label
from deepaas.api.routes import Route
from deepaas.api.routing import add_route
from deepaas.engine.devices import TRAINING_KEY
from deepaas.engine.executor import RESTART_CAUSES, Executor

LOG = logging.getLogger(__name__)

#: Upper bounds of the batch-size buckets.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, float("inf"))
TRAINING_STATUSES = ("queued", "running", "done", "error", "cancelled")
#: SLURM states always exposed (0 when none), so that their series never vanish.
SLURM_STATES = ("PENDING", "RUNNING")


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
        #: (model, SLURM state) -> unfinished trainings; None without SLURM.
        self.slurm_states: dict[tuple[str, str], int] | None = None

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
            "start_failed (a restarted worker did not come up), cancelled "
            "(stopped because the prediction job it ran was cancelled), "
            "gpu_failed (its GPU failed in a call: it exited to be replaced).",
            labels=["model", "cause"],
        )
        timeouts = CounterMetricFamily(
            "deepaas_predict_timeouts",
            "Predictions answered 504 for exceeding --predict-timeout.",
            labels=["model"],
        )
        out_of_memory = CounterMetricFamily(
            "deepaas_predict_out_of_gpu_memory",
            "Predictions answered 500 because the model ran out of GPU memory "
            "(its worker released its cached GPU memory and went on serving).",
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
            for cause in RESTART_CAUSES:
                restarts.add_metric([name, cause], stats.restarts.get(cause, 0))
            timeouts.add_metric([name], stats.timeouts)
            out_of_memory.add_metric([name], stats.out_of_memory)
            description = getattr(executor, "description", None)
            if description is not None and description.batching:
                buckets, running = [], 0
                for bound in BATCH_BUCKETS:
                    running = sum(
                        n for size, n in stats.batch_sizes.items() if size <= bound
                    )
                    buckets.append((bucket_label(float(bound)), running))
                total = sum(size * n for size, n in stats.batch_sizes.items())
                batches.add_metric([name], buckets, total)
        yield from gauges.values()
        yield restarts
        yield timeouts
        yield out_of_memory
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
        if self.slurm_states is None:
            return
        # A pending job is "running" above, as DEEPaaS 2.x clients see it.
        jobs = GaugeMetricFamily(
            "deepaas_slurm_trainings",
            "Unfinished SLURM trainings, by model and the SLURM state of their "
            "job (PENDING: waiting in SLURM's queue).",
            labels=["model", "state"],
        )
        for model in models:
            states = set(SLURM_STATES)
            states |= {s for m, s in self.slurm_states if m == model}
            for state in sorted(states):
                jobs.add_metric(
                    [model, state], self.slurm_states.get((model, state), 0)
                )
        yield jobs

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
        requests: RequestMetrics,
        trainings: Any = None,
        gpu_plan: Mapping[str, Any] | None = None,
    ) -> None:
        self.requests = requests
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
            backend = getattr(self._trainings, "backend", None)
            if getattr(backend, "scheduler", None) == "slurm":
                self.engine.slurm_states = await asyncio.to_thread(
                    store.count_by_scheduler_state
                )
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


METRICS_ROUTE = Route(
    method="GET", path="/metrics", kind="metrics", doc=openapi.metrics_operation
)


def setup(
    app: web.Application,
    executors: Mapping[str, Executor],
    *,
    trainings: Any = None,
    gpu_plan: Mapping[str, Any] | None = None,
) -> None:
    """Serve ``/metrics`` and keep this application's registry on it.

    Call it after :func:`count_requests` and the routes it counts.
    """
    app[METRICS] = ServerMetrics(
        executors,
        requests=app[REQUEST_METRICS],
        trainings=trainings,
        gpu_plan=gpu_plan,
    )
    add_route(app, METRICS_ROUTE, metrics)


def count_requests(app: web.Application, models: Iterable[str]) -> None:
    """Count the requests of every route added from now on (before the routes)."""
    requests = app[REQUEST_METRICS] = RequestMetrics(models)
    app.cleanup_ctx.append(requests.fold_periodically)
