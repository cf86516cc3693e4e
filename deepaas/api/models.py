"""GET /v2/models/ and /v2/models/<name>/, and POST .../predict/."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from deepaas.api.keys import EXECUTORS, SETTINGS
from deepaas.api.negotiation import choose_media_type
from deepaas.api.request_args import (
    add_header_arguments,
    read_arguments,
    remove_uploads,
)
from deepaas.api.routing import add_route, url
from deepaas.exceptions import EndpointDisabled, MethodNotImplemented, ModelNotFound
from deepaas.model.execution import Executor


def get_executor(request: web.Request) -> Executor:
    """The executor of the model named in the path, or 404."""
    name = request.match_info["name"]
    executors = request.app[EXECUTORS]
    try:
        return executors[name]
    except KeyError:
        raise ModelNotFound(
            f"model {name!r} is not served here; served models: "
            f"{', '.join(sorted(executors)) or 'none'}"
        ) from None


def model_json(request: web.Request, executor: Executor) -> dict[str, Any]:
    """A model as the contract lists it: metadata, id, name and links."""
    desc = executor.description
    body = dict(desc.metadata)
    body.setdefault("id", "0")
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


async def predict(request: web.Request) -> web.Response:
    executor = get_executor(request)
    settings = request.app[SETTINGS]
    if not settings.predict_endpoint:
        raise EndpointDisabled("the predict endpoint is disabled on this server")
    desc = executor.description
    if not desc.predict.available:
        raise MethodNotImplemented(f"model {desc.name!r} does not implement predict")
    raw = await read_arguments(
        request, max_size=settings.client_max_size, upload_dir=settings.upload_dir
    )
    add_header_arguments(request, raw, desc.predict.parameters_v2)
    try:
        accept = choose_media_type(request, raw, desc.accept)
        outcome = await executor.predict(raw, accept)
    finally:
        remove_uploads(raw)
    return web.Response(
        body=outcome.body, headers={"Content-Type": outcome.content_type}
    )


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/v2/models/", list_models)
    add_route(app, "GET", "/v2/models/{name}/", get_model)
    add_route(app, "POST", "/v2/models/{name}/predict/", predict)
