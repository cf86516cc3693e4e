"""The application factory: one aiohttp Application per server."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from deepaas.api import debug, docs, health, jobs, metrics, models, train, versions
from deepaas.api.keys import (
    DEBUG_CAPTURE,
    EXECUTORS,
    SETTINGS,
    SPEC_CACHE,
    TRAININGS,
    ApiSettings,
)
from deepaas.api.request_args import DEFAULT_MAX_FORM_PARTS, MAX_FORM_PARTS
from deepaas.api.routes import ROUTES, RouteTable
from deepaas.api.routing import add_fallback
from deepaas.api.security.guard import Guard, install
from deepaas.api.startup import STARTUP, Startup
from deepaas.engine.executor import Executor
from deepaas.jobs import PredictJobService
from deepaas.training import TrainingService


def create_app(
    executors: dict[str, Executor],
    *,
    settings: ApiSettings | None = None,
    trainings: TrainingService | None = None,
    predict_jobs: PredictJobService | None = None,
    debug_capture: debug.DebugCapture | None = None,
    manage_executors: bool = True,
    gpu_plan: Mapping[str, Any] | None = None,
    guard: Guard | None = None,
    max_form_parts: int = DEFAULT_MAX_FORM_PARTS,
    startup: Startup | None = None,
) -> web.Application:
    """Build the DEEPaaS V2 API over already-configured executors.

    With ``manage_executors`` the application starts the executors (loading
    and warming every model) when it starts, and stops them, with their
    worker processes, when it shuts down.  ``guard`` holds the Host, Origin
    and token checks (default: cross-site state changes refused, no tokens).
    ``max_form_parts`` bounds the parts of a multipart body and the fields
    of a url-encoded one (``--max-form-parts``; 0: no limit).
    With ``startup`` (and ``manage_executors``), the application does not
    wait for the models when it starts: ``startup`` warms them in the
    background while ``/health`` and ``/ready`` answer, and the routes that
    need the models wait for it (see :mod:`deepaas.api.startup`).
    ``predict_jobs``: the service that runs ``Prefer: respond-async``
    predictions as jobs (without it, that preference is ignored).
    """
    if max_form_parts < 0:
        raise ValueError(f"--max-form-parts must be >= 0 (got {max_form_parts})")
    settings = settings or ApiSettings()
    max_size = settings.client_max_size or sys.maxsize
    # No middleware: handlers answer their own errors (see api.errors).
    # handler_cancellation: a client that disconnects cancels its handler,
    # so its queued call leaves the queue and its temp files go at once
    # (docs/engine.md, "Abandoned requests").
    app = web.Application(
        client_max_size=max_size, handler_args={"handler_cancellation": True}
    )
    app[SETTINGS] = settings
    app[MAX_FORM_PARTS] = max_form_parts
    app[EXECUTORS] = executors
    app[SPEC_CACHE] = {}
    app[ROUTES] = RouteTable()  # filled by the routes' setup below
    if startup is not None:
        app[STARTUP] = startup  # before the routes, whose wrapper reads it
    if trainings is not None:
        app[TRAININGS] = trainings
    if predict_jobs is not None:
        app[jobs.JOBS] = predict_jobs
    if settings.debug_endpoint and debug_capture is not None:
        app[DEBUG_CAPTURE] = debug_capture
    install(app, guard)  # before the routes, which it guards
    if settings.metrics:
        metrics.count_requests(app, executors)  # before the routes too

    # In the order that the API descriptions list them (they follow the
    # route table; jobs extend predict, and come before the trainings).
    versions.setup(app)
    models.setup(app)
    jobs.setup(app)
    train.setup(app)
    docs.setup(app, with_ui=settings.doc_endpoint)
    debug.setup(app)
    health.setup(app)
    if settings.metrics:  # gpu_plan: the device plan, for deepaas_gpu_assigned
        metrics.setup(app, executors, trainings=trainings, gpu_plan=gpu_plan)
    add_fallback(app)

    if manage_executors:
        # The training store is opened first: a state directory that cannot
        # be used stops start-up before anything else has started.
        app.cleanup_ctx.insert(0, _run_trainings)
        app.cleanup_ctx.append(_run_executors)
        # After the executors: on the way down, jobs are interrupted before
        # the workers that run them stop.
        app.cleanup_ctx.append(_run_predict_jobs)
    return app


async def _run_trainings(app: web.Application) -> AsyncIterator[None]:
    trainings = app.get(TRAININGS)
    if trainings is not None and hasattr(trainings, "start"):
        await trainings.start()
    try:
        yield
    finally:
        if trainings is not None and hasattr(trainings, "close"):
            await trainings.close()


async def _run_predict_jobs(app: web.Application) -> AsyncIterator[None]:
    service = app.get(jobs.JOBS)
    if service is not None:
        await service.start()
    try:
        yield
    finally:
        if service is not None:
            await service.close()


async def _run_executors(app: web.Application) -> AsyncIterator[None]:
    startup = app.get(STARTUP)
    if startup is not None:
        startup.begin()
        try:
            yield
        finally:
            await startup.close()
        return
    executors = app[EXECUTORS]
    started: list[Executor] = []
    try:
        for executor in executors.values():
            await executor.start()
            started.append(executor)
        yield
    finally:
        for executor in started:
            await executor.stop()
