"""GET /v2/models/ and /v2/models/<name>/, and POST .../predict/."""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web

from deepaas.api import jobs, openapi
from deepaas.api.errors import unknown_model
from deepaas.api.keys import EXECUTORS, SETTINGS
from deepaas.api.negotiation import NO_CHOICE, choose_media_type
from deepaas.api.request_args import (
    add_header_arguments,
    read_arguments,
    remove_uploads,
)
from deepaas.api.routes import Route
from deepaas.api.routing import add_route, url
from deepaas.api.settings import ApiSettings
from deepaas.engine.executor import Executor
from deepaas.exceptions import EndpointDisabled, MethodNotImplemented
from deepaas.model.wrapper import JSON_MEDIA_TYPE
from deepaas.provenance import PredictionLog, model_package

#: The provenance log of predictions (--provenance-log), None when off.
PREDICTION_LOG: web.AppKey[PredictionLog | None] = web.AppKey("deepaas_prediction_log")

#: The Content-Type of a JSON prediction, as aiohttp gives every JSON answer.
JSON_UTF8 = "application/json; charset=utf-8"


def get_executor(request: web.Request) -> Executor:
    """The executor of the model named in the path, or 404."""
    name = request.match_info["name"]
    executors = request.app[EXECUTORS]
    try:
        return executors[name]
    except KeyError:
        raise unknown_model(name, executors) from None


def model_json(request: web.Request, executor: Executor) -> dict[str, Any]:
    """A model as the contract lists it: metadata, id, name and links."""
    desc = executor.description
    body = dict(desc.metadata)
    body.setdefault("id", desc.name)
    body.setdefault("name", desc.name)
    body["links"] = [
        {"rel": "self", "href": url(request, f"/v2/models/{desc.name}")}
    ] + [link for link in body.get("links", []) or [] if isinstance(link, dict)]
    return body


async def list_models(request: web.Request) -> web.Response:
    executors = request.app[EXECUTORS]
    return web.json_response(
        {"models": [model_json(request, ex) for ex in executors.values()]}
    )


async def get_model(request: web.Request) -> web.Response:
    return web.json_response(model_json(request, get_executor(request)))


# Names that can be written into a route literally (no quoting, no "{").
_PLAIN_NAME = re.compile(r"[A-Za-z0-9._~-]+")


async def predict(request: web.Request) -> web.Response:
    app = request.app
    return await _predict(
        request, get_executor(request), app[SETTINGS], app[PREDICTION_LOG]
    )


def _predict_for(
    executor: Executor, settings: ApiSettings, log: PredictionLog | None
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of one model's own predict route (its lookups done once)."""
    return functools.partial(_predict, executor=executor, settings=settings, log=log)


async def _predict(
    request: web.Request,
    executor: Executor,
    settings: ApiSettings,
    log: PredictionLog | None = None,
) -> web.Response:
    if not settings.predict_endpoint:
        raise EndpointDisabled("the predict endpoint is disabled on this server")
    desc = executor.description
    if not desc.predict.available:
        raise MethodNotImplemented(f"model {desc.name!r} does not implement predict")
    raw = await read_arguments(
        request,
        max_size=settings.client_max_size,
        upload_max_size=settings.upload_max_size,
        upload_dir=settings.upload_dir,
    )
    add_header_arguments(request, raw, desc.predict.args, negotiated=bool(desc.accept))
    begun = await log.begin(raw) if log is not None else None  # --provenance-log
    try:
        accept, concrete = (
            choose_media_type(request, raw, desc.accept) if desc.accept else NO_CHOICE
        )
        if jobs.PREFER in request.headers and jobs.prefers_async(request.headers):
            service = request.app.get(jobs.JOBS)
            if service is not None:  # else the preference is ignored (RFC 7240)
                return await jobs.submit(
                    request, service, executor, raw, accept, concrete
                )
        outcome = await executor.predict(raw, accept)
    finally:
        if raw.pairs:  # (the calls cost every request; most have no uploads)
            remove_uploads(raw)
    if log is not None and begun is not None:
        log.record(desc.name, begun, raw, outcome)
    content_type = outcome.content_type
    if content_type == JSON_MEDIA_TYPE:
        content_type = JSON_UTF8  # as DEEPaaS 2.x and every other JSON answer
    elif concrete is not None and content_type == accept:
        content_type = concrete  # image/png asked, the model's image/* answer
    # hdrs.CONTENT_TYPE, not "Content-Type": aiohttp then need not fold the
    # name's case, a third of building the response.
    return web.Response(body=outcome.body, headers={hdrs.CONTENT_TYPE: content_type})


LIST_MODELS = Route(
    method="GET",
    path="/v2/models/",
    kind="read",
    needs_models=True,
    doc=openapi.list_models_operation,
)
GET_MODEL = Route(
    method="GET",
    path="/v2/models/{name}/",
    kind="read",
    needs_models=True,
    doc=openapi.model_operation,
)
PREDICT = Route(
    method="POST",
    path="/v2/models/{name}/predict/",
    kind="predict",
    needs_models=True,
    doc=openapi.predict_operation,
)


def setup(app: web.Application) -> None:
    """Register the model routes.

    Each served model also gets its predict path as a plain route: aiohttp
    finds a plain path with one dictionary look-up, whereas ``{name}`` routes
    are tried one by one against every other route under ``/v2/models``.
    The ``{name}`` route stays for the 404 naming the served models.
    """
    add_route(app, LIST_MODELS, list_models)
    settings = app[SETTINGS]
    log = _prediction_log(app, settings)
    app[PREDICTION_LOG] = log
    for name, executor in app[EXECUTORS].items():
        if _PLAIN_NAME.fullmatch(name):
            route = Route(
                method="POST",
                path=f"/v2/models/{name}/predict/",
                kind="predict",
                label=PREDICT.label,  # counted as the {name} route, for its model
                model=name,
                needs_models=True,
                doc=None,  # documented by the {name} route
            )
            add_route(app, route, _predict_for(executor, settings, log))
    add_route(app, GET_MODEL, get_model)
    add_route(app, PREDICT, predict)


def _prediction_log(
    app: web.Application, settings: ApiSettings
) -> PredictionLog | None:
    """The provenance log of predictions, opened and closed with the app."""
    if not settings.provenance_log:
        return None
    log = PredictionLog(settings.provenance_log)
    specs = [executor.spec for executor in app[EXECUTORS].values()]

    async def open_log(_app: web.Application) -> None:
        packages = [
            model_package(s.name, s.target, namespace=s.namespace) for s in specs
        ]
        await asyncio.to_thread(log.open, packages)

    async def close_log(_app: web.Application) -> None:
        await asyncio.to_thread(log.close)

    app.on_startup.append(open_log)
    app.on_cleanup.append(close_log)
    return log
