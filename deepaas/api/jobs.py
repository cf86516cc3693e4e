"""Prediction jobs over HTTP: ``Prefer: respond-async`` and ``.../predict/jobs/``.

``POST .../predict/`` with ``Prefer: respond-async`` (RFC 7240) answers 202
with the job's record, its ``Location`` and ``Preference-Applied``; without
that preference, or on a server without a job service, predict answers as
it always did.  The job routes read, list, cancel or forget jobs and serve
a job's result with the media type the model answered.  Handlers hand over
to :class:`deepaas.jobs.PredictJobService`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from multidict import CIMultiDictProxy

from deepaas.api import _jobs_openapi as doc
from deepaas.api.errors import unknown_model
from deepaas.api.keys import EXECUTORS, SETTINGS
from deepaas.api.routes import OperationBuilder, Route
from deepaas.api.routing import add_route, url
from deepaas.engine.executor import Executor
from deepaas.exceptions import EndpointDisabled, MethodNotImplemented
from deepaas.jobs import (
    JobNotFound,
    JobsNotConfigured,
    PredictJob,
    PredictJobService,
)
from deepaas.jobs._jobdir import result_media_type
from deepaas.model.wrapper import RawArguments
from deepaas.provenance import RECORD_FILE

#: The application's prediction job service (absent: Prefer is ignored).
JOBS = web.AppKey("deepaas_predict_jobs", PredictJobService)

PREFER = "Prefer"
RESPOND_ASYNC = "respond-async"
STATUS_HEADER = "X-Job-Status"
JOBS_PATH = "/v2/models/{name}/predict/jobs/"
# Only 32 hex digits name a job: any other id finds no route (404).
JOB = "/v2/models/{name}/predict/jobs/{job_id:[0-9a-fA-F]{32}}"


def prefers_async(headers: CIMultiDictProxy[str]) -> bool:
    """Whether a ``Prefer`` header asks for ``respond-async`` (RFC 7240)."""
    for value in headers.getall(PREFER, ()):
        for preference in value.split(","):
            token = preference.split(";", 1)[0].split("=", 1)[0]
            if token.strip().lower() == RESPOND_ASYNC:
                return True
    return False


def job_url(request: web.Request, job: PredictJob) -> str:
    """Where a job is read, cancelled and forgotten."""
    return url(request, f"/v2/models/{job.model}/predict/jobs/{job.uuid}")


def job_json(request: web.Request, job: PredictJob) -> dict[str, Any]:
    """A job as answered: its record, links to itself and to its result."""
    body = job.to_json()
    href = job_url(request, job)
    links: list[dict[str, Any]] = [{"rel": "self", "href": href}]
    if job.has_result or not job.finished:
        result: dict[str, Any] = {"rel": "result", "href": f"{href}/result"}
        if job.media_type is not None:
            result["type"] = job.media_type
        links.append(result)
    if "result" in body:
        body["result"]["href"] = f"{href}/result"
    body["links"] = links
    return body


async def submit(
    request: web.Request,
    service: PredictJobService,
    executor: Executor,
    raw: RawArguments,
    accept: str | None,
    concrete: str | None,
) -> web.Response:
    """Hand a prediction over as a job: 202, Location, Preference-Applied."""
    job = await service.submit(executor, raw, accept, concrete)
    return web.json_response(
        job_json(request, job),
        status=202,
        headers={
            hdrs.LOCATION: job_url(request, job),
            "Preference-Applied": RESPOND_ASYNC,
        },
    )


def _resolve(request: web.Request) -> tuple[Executor, PredictJobService]:
    """The model's executor and the job service, or the reason why not."""
    executor = _resolve_model(request)
    service = request.app.get(JOBS)
    if service is None:
        raise JobsNotConfigured("prediction jobs are not configured on this server")
    return executor, service


def _resolve_model(request: web.Request) -> Executor:
    """The model's executor, unless it cannot predict here (404, 402, 501)."""
    name = request.match_info["name"]
    executors = request.app[EXECUTORS]
    executor = executors.get(name)
    if executor is None:
        raise unknown_model(name, executors)
    if not request.app[SETTINGS].predict_endpoint:
        raise EndpointDisabled("the predict endpoint is disabled on this server")
    if not executor.description.predict.available:
        raise MethodNotImplemented(f"model {name!r} does not implement predict")
    return executor


async def list_jobs(request: web.Request) -> web.Response:
    if request.app.get(JOBS) is None:
        _resolve_model(request)
        return web.json_response([])  # no job service: no jobs
    executor, service = _resolve(request)
    jobs = await service.list(executor.spec.name)
    return web.json_response([job_json(request, job) for job in jobs])


async def get_job(request: web.Request) -> web.Response:
    executor, service = _resolve(request)
    job = await service.get(executor.spec.name, request.match_info["job_id"])
    return web.json_response(job_json(request, job))


async def delete_job(request: web.Request) -> web.Response:
    executor, service = _resolve(request)
    job = await service.delete(executor.spec.name, request.match_info["job_id"])
    return web.json_response(job_json(request, job))


async def job_result(request: web.Request) -> web.Response:
    executor, service = _resolve(request)
    job, path = await service.result(executor.spec.name, request.match_info["job_id"])
    try:
        body = await asyncio.to_thread(Path.read_bytes, path)
    except FileNotFoundError:  # forgotten meanwhile (DELETE, retention)
        raise JobNotFound(
            f"model {job.model!r} has no prediction job {job.uuid!r}"
        ) from None
    assert job.media_type is not None  # has_result
    return web.Response(
        body=body,
        status=job.error_status or 200,
        headers={
            hdrs.CONTENT_TYPE: result_media_type(job.media_type),
            STATUS_HEADER: job.status,
        },
    )


async def job_provenance(request: web.Request) -> web.Response:
    """The provenance record of a job that has ended (docs/provenance.md)."""
    executor, service = _resolve(request)
    job = await service.get(executor.spec.name, request.match_info["job_id"])
    path = service.state_dir / job.job_dir / RECORD_FILE
    try:
        body = await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        state = "it has not ended" if not job.finished else "none was written"
        raise JobNotFound(
            f"prediction job {job.uuid} has no provenance record: {state}"
        ) from None
    return web.Response(body=body, content_type="application/json")


def _route(method: str, path: str, builder: OperationBuilder) -> Route:
    """A job route: the kind of predict, under the model's path."""
    return Route(
        method=method, path=path, kind="predict", needs_models=True, doc=builder
    )


LIST_JOBS = _route("GET", JOBS_PATH, doc.list_jobs_operation)
GET_JOB = _route("GET", JOB, doc.get_job_operation)
DELETE_JOB = _route("DELETE", JOB, doc.delete_job_operation)
JOB_RESULT = _route("GET", f"{JOB}/result", doc.job_result_operation)
JOB_PROVENANCE = _route("GET", f"{JOB}/provenance", doc.job_provenance_operation)


def setup(app: web.Application) -> None:
    """Register the job routes."""
    add_route(app, LIST_JOBS, list_jobs)
    add_route(app, GET_JOB, get_job)
    add_route(app, DELETE_JOB, delete_job)
    add_route(app, JOB_RESULT, job_result)
    add_route(app, JOB_PROVENANCE, job_provenance)
