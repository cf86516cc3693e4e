"""The training endpoints: start, list, inspect, cancel or forget, follow logs.

Handlers resolve the model and the training service, then hand over to
:class:`deepaas.training.TrainingService`; errors are domain exceptions that
every handler answers as JSON (see :mod:`deepaas.api.errors`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from deepaas.api import openapi
from deepaas.api.keys import SETTINGS, TRAININGS
from deepaas.api.models import get_executor
from deepaas.api.request_args import (
    add_header_arguments,
    read_arguments,
    remove_uploads,
)
from deepaas.api.routes import OperationBuilder, Route
from deepaas.api.routing import add_route, url
from deepaas.engine.executor import Executor
from deepaas.exceptions import EndpointDisabled, MethodNotImplemented, TrainingNotFound
from deepaas.provenance.trainings import RECORD_FILE as PROVENANCE_FILE
from deepaas.training import (
    InvalidTrainingRequest,
    Training,
    TrainingService,
    TrainingsNotConfigured,
)

LOG_OFFSET_HEADER = "X-Log-Offset"
LOG_DROPPED_HEADER = "X-Log-Dropped"
STATUS_HEADER = "X-Training-Status"
# Only 32 hex digits name a training: any other id finds no route (404, as 2.x).
TRAINING = "/v2/models/{name}/train/{uuid:[0-9a-fA-F]{32}}"


def _resolve(request: web.Request) -> tuple[Executor, TrainingService]:
    """The model's executor and the training service, or the reason why not."""
    executor = _trainable(request)
    desc = executor.description
    if not desc.train.available:
        raise MethodNotImplemented(f"model {desc.name!r} does not implement train")
    service = request.app.get(TRAININGS)
    if service is None:
        raise TrainingsNotConfigured(
            "trainings are not configured on this server"
        )
    return executor, service


def _trainable(request: web.Request) -> Executor:
    """The model's executor, unless the train endpoint is switched off (402)."""
    executor = get_executor(request)
    if not request.app[SETTINGS].train_endpoint:
        raise EndpointDisabled(
            "the train endpoint is disabled on this server (--train-endpoint false)"
        )
    return executor


def training_json(request: web.Request, training: Training) -> dict[str, Any]:
    """A training as answered: the contract's keys plus ``model`` and links."""
    body = training.to_json()
    href = url(request, f"/v2/models/{training.model}/train/{training.uuid}")
    body["links"] = [
        {"rel": "self", "href": href},
        {"rel": "logs", "type": "text/plain", "href": f"{href}/logs"},
    ]
    return body


def _query_int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise InvalidTrainingRequest(
            f"?{name}= must be a whole number >= 0 (got {value!r})"
        )
    return number


async def start_training(request: web.Request) -> web.Response:
    executor, service = _resolve(request)
    settings = request.app[SETTINGS]
    raw = await read_arguments(
        request,
        max_size=settings.client_max_size,
        upload_max_size=settings.upload_max_size,
        upload_dir=settings.upload_dir,
    )
    add_header_arguments(
        request, raw, executor.description.train.args, negotiated=False
    )
    try:
        args = await executor.validate_train(raw)
        training = await service.submit(executor.spec, raw, args)
    finally:
        remove_uploads(raw)
    return web.json_response(training_json(request, training))


async def list_trainings(request: web.Request) -> web.Response:
    if not _trainable(request).description.train.available:
        return web.json_response([])  # a model without train has none (as 2.x)
    executor, service = _resolve(request)
    trainings = await service.list(executor.spec.name)
    return web.json_response([training_json(request, t) for t in trainings])


async def get_training(request: web.Request) -> web.Response:
    executor, service = _resolve(request)
    training = await service.get(executor.spec.name, request.match_info["uuid"])
    return web.json_response(training_json(request, training))


async def delete_training(request: web.Request) -> web.Response:
    executor, service = _resolve(request)
    training = await service.delete(executor.spec.name, request.match_info["uuid"])
    return web.json_response(training_json(request, training))


async def training_logs(request: web.Request) -> web.Response:
    executor, service = _resolve(request)
    training, chunk = await service.read_log(
        executor.spec.name,
        request.match_info["uuid"],
        offset=_query_int(request, "offset"),
        tail=_query_int(request, "tail"),
    )
    return web.Response(
        body=chunk.data,
        content_type="text/plain",
        charset="utf-8",
        headers={LOG_OFFSET_HEADER: str(chunk.next_offset),
                 LOG_DROPPED_HEADER: str(chunk.dropped),
                 STATUS_HEADER: training.status},
    )


async def training_provenance(request: web.Request) -> web.Response:
    """The provenance record of a training that has ended (docs/provenance.md)."""
    executor, service = _resolve(request)
    training = await service.get(executor.spec.name, request.match_info["uuid"])
    path = service.state_dir / training.job_dir / PROVENANCE_FILE
    try:
        body = await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        state = "it has not ended" if not training.finished else "none was written"
        raise TrainingNotFound(
            f"training {training.uuid} has no provenance record yet: {state}"
        ) from None
    return web.Response(body=body, content_type="application/json")


def _route(method: str, path: str, builder: OperationBuilder) -> Route:
    """A training route: the kind of train, under the model's path."""
    return Route(method=method, path=path, kind="train", needs_models=True, doc=builder)


START = _route("POST", "/v2/models/{name}/train/", openapi.start_training_operation)
LIST = _route("GET", "/v2/models/{name}/train/", openapi.list_trainings_operation)
GET = _route("GET", TRAINING, openapi.get_training_operation)
DELETE = _route("DELETE", TRAINING, openapi.delete_training_operation)
LOGS = _route("GET", f"{TRAINING}/logs", openapi.training_logs_operation)
PROVENANCE = _route(
    "GET", f"{TRAINING}/provenance", openapi.training_provenance_operation
)


def setup(app: web.Application) -> None:
    """Register the training routes."""
    add_route(app, START, start_training)
    add_route(app, LIST, list_trainings)
    add_route(app, GET, get_training)
    add_route(app, DELETE, delete_training)
    add_route(app, LOGS, training_logs)
    add_route(app, PROVENANCE, training_provenance)
