"""The API descriptions: Swagger 2.0 at /swagger.json, OpenAPI 3.1 beside it.

Existing clients (a graphical front-end among them) read ``/swagger.json``
as Swagger 2.0, so that document keeps the DEEPaaS shape: one path per
served model, every argument a parameter with ``in``/``type``/``default``,
``produces`` from the model's ``accept`` choices and the response schema as
``definitions.ModelPredictionResponse``.  The same content is served as
OpenAPI 3.1 at ``/openapi.json`` for newer tooling.  Both are assembled with
apispec from the app's route table (:mod:`deepaas.api.routes`: each route
names its operation builder, one of the ``*_operation`` functions here or
in :mod:`deepaas.api._jobs_openapi`) and the workers' model descriptions.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from apispec import APISpec

from deepaas import __version__
from deepaas.api._arguments_openapi import (
    openapi3_body,
    openapi3_parameters,
    swagger2_parameters,
)
from deepaas.api._jobs_openapi import accepted_answer, job_schema
from deepaas.api._openapi_parts import error_responses as _error_responses
from deepaas.api._openapi_parts import json_body as _json
from deepaas.api._openapi_parts import ref as _ref
from deepaas.api._training_schema import training_schema
from deepaas.api.routes import DocContext, Documented, Route
from deepaas.model.description import RESPONSE_SCHEMA_NAME, ModelDescription

TITLE = "DEEPaaS API"
DESCRIPTION = "Machine-learning models served with deepaas through the DEEPaaS V2 API."


def _rename_refs(value: Any, mapping: dict[str, str], prefix: str) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                head, _, tail = item.rpartition("/")
                out[key] = f"{head}/{mapping.get(tail, tail)}"
            else:
                out[key] = _rename_refs(item, mapping, prefix)
        return out
    if isinstance(value, list):
        return [_rename_refs(item, mapping, prefix) for item in value]
    return value


def _response_schemas(
    descriptions: Iterable[ModelDescription], version: int
) -> tuple[dict[str, Any], dict[str, str]]:
    """All models' response schemas, renamed apart; and each model's ref name."""
    schemas: dict[str, Any] = {}
    refs: dict[str, str] = {}
    for desc in descriptions:
        own = desc.response_definitions_v2 if version == 2 else desc.response_schemas_v3
        if not own:
            continue
        mapping = {name: name if not schemas else f"{desc.name}_{name}" for name in own}
        for name, schema in own.items():
            schemas[mapping[name]] = _rename_refs(copy.deepcopy(schema), mapping, "")
        refs[desc.name] = mapping[RESPONSE_SCHEMA_NAME]
    return schemas, refs


def _predict_operation(
    desc: ModelDescription, response_ref: str | None, version: int
) -> dict[str, Any]:
    produces = desc.accept or ["application/json"]
    op: dict[str, Any] = {
        "tags": [desc.name],
        "summary": "Make a prediction given the input data",
        "operationId": f"predict_{desc.name}",
        "responses": {
            200: {"description": "The prediction"},
            202: accepted_answer(version),
            **_error_responses(
                version, 400, 402, 408, 413, 415, 422, 500, 501, 503, 504
            ),
        },
    }
    ok = _ref(response_ref or "Prediction", version)
    if version == 2:
        op["parameters"] = swagger2_parameters(desc.predict.args)
        op["consumes"] = ["multipart/form-data", "application/x-www-form-urlencoded"]
        op["produces"] = produces
        if produces == ["application/json"] or "application/json" in produces:
            op["responses"][200]["schema"] = {"$ref": ok}
    else:
        op["parameters"] = openapi3_parameters(desc.predict.args)
        body = _request_body(
            openapi3_body(desc.predict.args), desc.predict.file_arguments
        )
        if body:
            op["requestBody"] = body
        content: dict[str, Any] = {}
        for media in produces:
            content[media] = (
                {"schema": {"$ref": ok}}
                if media == "application/json"
                else {"schema": {"type": "string", "format": "binary"}}
            )
        op["responses"][200]["content"] = content
    return op


def _request_body(schema: dict[str, Any], file_arguments: list[str]) -> dict[str, Any]:
    if not schema:
        return {}
    content = {"multipart/form-data": {"schema": schema}}
    json_schema = copy.deepcopy(schema)
    for name in file_arguments:
        json_schema["properties"].pop(name, None)
        if name in json_schema.get("required", []):
            json_schema["required"].remove(name)
    if not json_schema.get("required"):
        json_schema.pop("required", None)
    if json_schema["properties"]:
        content["application/json"] = {"schema": json_schema}
        if not file_arguments:
            content["application/x-www-form-urlencoded"] = {"schema": json_schema}
    return {"content": content}


def _train_operations(desc: ModelDescription, version: int) -> dict[str, Any]:
    training = _json(_ref("Training", version), version)
    start: dict[str, Any] = {
        "tags": [desc.name],
        "summary": "Start a training; it runs in its own process",
        "operationId": f"train_{desc.name}",
        "responses": {
            200: {
                "description": "The training: running (SLURM's state in "
                "slurm.state), or queued under --max-concurrent-trainings",
                **training,
            },
            **_error_responses(version, 400, 402, 408, 413, 415, 422, 501, 503),
        },
    }
    if version == 2:
        start["parameters"] = swagger2_parameters(desc.train.args)
        start["consumes"] = ["multipart/form-data", "application/x-www-form-urlencoded"]
    else:
        start["parameters"] = openapi3_parameters(desc.train.args)
        body = _request_body(openapi3_body(desc.train.args), desc.train.file_arguments)
        if body:
            start["requestBody"] = body
    listing_schema = {"type": "array", "items": {"$ref": _ref("Training", version)}}
    listing = {
        "tags": [desc.name],
        "summary": "List the trainings of this model",
        "operationId": f"list_trainings_{desc.name}",
        "responses": {
            200: {"description": "Trainings", **_json(listing_schema, version)},
            **_error_responses(version, 402),
        },
    }
    return {"post": start, "get": listing}


def _uuid_param(version: int) -> dict[str, Any]:
    param: dict[str, Any] = {
        "name": "uuid",
        "in": "path",
        "required": True,
        "description": "The training's uuid",
    }
    # Only 32 hexadecimal digits find the route (any other id is a 404).
    pattern = "^[0-9a-fA-F]{32}$"
    if version == 2:
        param["type"] = "string"
        param["pattern"] = pattern
    else:
        param["schema"] = {"type": "string", "pattern": pattern}
    return param


def _training_item_operations(desc: ModelDescription, version: int) -> dict[str, Any]:
    training = _json(_ref("Training", version), version)
    return {
        "parameters": [_uuid_param(version)],
        "get": {
            "tags": [desc.name],
            "summary": "Status and result of a training",
            "operationId": f"get_training_{desc.name}",
            "responses": {
                200: {"description": "The training", **training},
                **_error_responses(version, 400, 402, 404),
            },
        },
        "delete": {
            "tags": [desc.name],
            "summary": "Cancel a running training (its processes stop), or forget "
            "a finished one with its logs",
            "operationId": f"delete_training_{desc.name}",
            "responses": {
                200: {"description": "The training", **training},
                **_error_responses(version, 400, 402, 404, 409),
            },
        },
    }


def _training_logs_operation(desc: ModelDescription, version: int) -> dict[str, Any]:
    params: list[dict[str, Any]] = [_uuid_param(version)]
    for name, text in (
        ("offset", "Return the log from this byte offset on (to follow it)"),
        ("tail", "Return only the last N lines"),
    ):
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": False,
            "description": text,
        }
        if version == 2:
            param["type"] = "integer"
            param["minimum"] = 0
        else:
            param["schema"] = {"type": "integer", "minimum": 0}
        params.append(param)
    text_body: dict[str, Any] = (
        {"schema": {"type": "string"}}
        if version == 2
        else {"content": {"text/plain": {"schema": {"type": "string"}}}}
    )
    op: dict[str, Any] = {
        "tags": [desc.name],
        "summary": "The training's output and log (stdout, stderr, logging). The "
        "X-Log-Offset header gives the offset to ask for next.",
        "operationId": f"training_logs_{desc.name}",
        "responses": {
            200: {"description": "Log text", **text_body},
            **_error_responses(version, 400, 402, 404),
        },
    }
    if version == 2:
        op["produces"] = ["text/plain", "application/json"]  # errors are JSON
    return {"parameters": params, "get": op}


def _training_provenance_operation(
    desc: ModelDescription, version: int
) -> dict[str, Any]:
    record: dict[str, Any] = {"type": "object"}
    body = (
        {"schema": record}
        if version == 2
        else {"content": {"application/json": {"schema": record}}}
    )
    return {
        "parameters": [_uuid_param(version)],
        "get": {
            "tags": [desc.name],
            "summary": "The provenance record of a training that has ended: a W3C "
            "PROV-JSON document (model package and version, arguments, SHA-256 "
            "of inputs and output, times, host, devices, outcome)",
            "operationId": f"training_provenance_{desc.name}",
            "responses": {
                200: {"description": "PROV-JSON document", **body},
                **_error_responses(version, 400, 402, 404),
            },
        },
    }


def _simple_get(
    summary: str, op_id: str, version: int, tag: str = "deepaas", *errors: int
) -> dict[str, Any]:
    return {
        "get": {
            "tags": [tag],
            "summary": summary,
            "operationId": op_id,
            "responses": {
                200: {"description": summary, **_json({"type": "object"}, version)},
                **_error_responses(version, *errors),
            },
        }
    }


def _ready_operation(version: int) -> dict[str, Any]:
    operations = _simple_get(
        "Readiness: every worker is warm", "ready", version, "deepaas"
    )
    counts = _json({"type": "object"}, version)
    operations["get"]["responses"][503] = {
        "description": "Not ready: 'starting: <what>' (the server is starting), "
        "'warming', 'degraded', 'stalled' or 'not ready', "
        "with each model's worker counts; retry after Retry-After seconds",
        **counts,
    }
    return operations


def _metrics_operation(version: int) -> dict[str, Any]:
    media = ("text/plain", "application/openmetrics-text")
    body: dict[str, Any] = (
        {"schema": {"type": "string"}}
        if version == 2
        else {"content": {m: {"schema": {"type": "string"}} for m in media}}
    )
    op: dict[str, Any] = {
        "tags": ["deepaas"],
        "summary": "Prometheus metrics: requests, workers, queues, trainings, "
        "GPUs (OpenMetrics when asked for in Accept)",
        "operationId": "metrics",
        "responses": {200: {"description": "The metrics", **body}},
    }
    # Its errors are JSON as everywhere: 500 here, 401/403 behind a token
    # (declare_bearer_auth).
    failed = _error_responses(version, 500)[500]
    failed["description"] = (
        "The server failed: a generic message with a reference to its log"
    )
    op["responses"][500] = failed
    if version == 2:
        op["produces"] = [*media, "application/json"]
    return {"get": op}


def _model(context: DocContext) -> ModelDescription:
    if context.model is None:
        raise ValueError("a model's operation is documented for a model")
    return context.model


def versions_operation(context: DocContext) -> Documented:
    """GET /: the API versions."""
    return _simple_get("API versions", "versions", context.version)["get"], []


def v2_operation(context: DocContext) -> Documented:
    """GET /v2/: the V2 API."""
    return _simple_get("The V2 API", "v2", context.version)["get"], []


def list_models_operation(context: DocContext) -> Documented:
    """GET /v2/models/: the served models."""
    summary = "Served models with their metadata"
    return _simple_get(summary, "models", context.version)["get"], []


def debug_operation(context: DocContext) -> Documented:
    """GET /v2/debug/: what the server printed and logged."""
    debug = _simple_get(
        "What the server printed and logged (204 unless --debug-endpoint)",
        "debug",
        context.version,
    )
    debug["get"]["responses"][204] = {
        "description": "The server runs without --debug-endpoint: nothing to show"
    }
    return debug["get"], []


def health_operation(context: DocContext) -> Documented:
    """GET /health: liveness."""
    summary = "Liveness: the server answers"
    return _simple_get(summary, "health", context.version)["get"], []


def ready_operation(context: DocContext) -> Documented:
    """GET /ready: readiness."""
    return _ready_operation(context.version)["get"], []


def metrics_operation(context: DocContext) -> Documented:
    """GET /metrics: the Prometheus metrics."""
    return _metrics_operation(context.version)["get"], []


def model_operation(context: DocContext) -> Documented:
    """GET /v2/models/<name>/: a model's metadata."""
    desc = _model(context)
    operations = _simple_get(
        "The model's metadata", f"model_{desc.name}", context.version, desc.name
    )
    return operations["get"], []


def predict_operation(context: DocContext) -> Documented:
    """POST /v2/models/<name>/predict/: a prediction."""
    desc = _model(context)
    return _predict_operation(desc, context.response_ref, context.version), []


def start_training_operation(context: DocContext) -> Documented:
    """POST /v2/models/<name>/train/ (undocumented for a model without train)."""
    desc = _model(context)
    if not desc.train.available:
        return None
    return _train_operations(desc, context.version)["post"], []


def list_trainings_operation(context: DocContext) -> Documented:
    """GET /v2/models/<name>/train/ (undocumented for a model without train)."""
    desc = _model(context)
    if not desc.train.available:
        return None  # (it answers [])
    return _train_operations(desc, context.version)["get"], []


def _training_item(context: DocContext, method: str) -> Documented:
    desc = _model(context)
    if not desc.train.available:
        return None
    operations = _training_item_operations(desc, context.version)
    return operations[method], operations["parameters"]


def get_training_operation(context: DocContext) -> Documented:
    """GET .../train/<uuid>: a training."""
    return _training_item(context, "get")


def delete_training_operation(context: DocContext) -> Documented:
    """DELETE .../train/<uuid>: cancel or forget a training."""
    return _training_item(context, "delete")


def training_logs_operation(context: DocContext) -> Documented:
    """GET .../train/<uuid>/logs: a training's log."""
    desc = _model(context)
    if not desc.train.available:
        return None
    operations = _training_logs_operation(desc, context.version)
    return operations["get"], operations["parameters"]


def training_provenance_operation(context: DocContext) -> Documented:
    """GET .../train/<uuid>/provenance: a training's provenance record."""
    desc = _model(context)
    if not desc.train.available:
        return None
    operations = _training_provenance_operation(desc, context.version)
    return operations["get"], operations["parameters"]


def build_document(
    descriptions: Iterable[ModelDescription],
    routes: Iterable[Route],
    *,
    version: int,
    base_path: str = "",
    is_open: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """The API description, ``version`` 2 (Swagger) or 3 (OpenAPI 3.1).

    Every route of ``routes`` (the app's route table) that has an operation
    builder is described: once, or once per model for a ``{name}`` route.
    ``is_open``: authentication is on, and says which kinds need no token
    (:func:`declare_bearer_auth`).

    Under ``base_path`` every path carries the prefix, as in DEEPaaS 2.x:
    clients build URLs from ``paths`` alone, so ``basePath`` stays ``/``
    (and OpenAPI 3 declares no server prefix) to keep the two from adding up.
    """
    descriptions = list(descriptions)
    options: dict[str, Any] = {"info": {"description": DESCRIPTION}}
    if version == 2:
        options["basePath"] = "/"
        openapi_version = "2.0"
    else:
        openapi_version = "3.1.0"
    spec = APISpec(TITLE, __version__, openapi_version, **options)
    schemas, refs = _response_schemas(descriptions, version)
    for name, schema in schemas.items():
        spec.components.schema(name, component=schema)
    spec.components.schema(
        "Error",
        component={
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "reference": {
                    "type": "string",
                    "description": "For an error of the server's: where its "
                    "log tells more",
                },
            },
        },
    )
    spec.components.schema(
        "ValidationErrors",
        component={
            "type": "object",
            "description": "Messages per invalid argument: a list of messages, "
            "or, for a list or mapping argument, messages per item (e.g. "
            '{"sample": {"0": ["Not a valid number."]}}); "_schema" for a '
            "rule about several arguments",
            "additionalProperties": {},
        },
    )
    spec.components.schema(
        "Prediction",
        component={
            "type": "object",
            "properties": {"status": {"type": "string"}, "predictions": {}},
        },
    )
    spec.components.schema("Training", component=training_schema(version))
    spec.components.schema("PredictJob", component=job_schema(version))

    # Each documented route's operation, grouped by path (the routes that do
    # not depend on a model first, then each model's), in table order.
    documented = [route for route in routes if route.doc is not None]
    paths: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    kinds: dict[tuple[str, str], str] = {}
    contexts = [(DocContext(version), "")] + [
        (DocContext(version, desc, refs.get(desc.name)), desc.name)
        for desc in descriptions
    ]
    for context, name in contexts:
        for route in documented:
            if route.per_model != bool(name):
                continue
            assert route.doc is not None
            built = route.doc(context)
            if built is None:
                continue  # e.g. a training operation of a model without train
            operation, parameters = built
            path = base_path + route.template.replace("{name}", name)
            operations, shared = paths.setdefault(path, ({}, []))
            operations[route.method.lower()] = operation
            if parameters and not shared:
                shared.extend(parameters)
            kinds[(path, route.method.lower())] = route.kind
    for path, (operations, parameters) in paths.items():
        spec.path(path, operations=operations, parameters=parameters)
    document = _stringify_status_codes(spec.to_dict())
    if is_open is not None:
        declare_bearer_auth(document, version=version, kinds=kinds, is_open=is_open)
    return document


def _stringify_status_codes(document: dict[str, Any]) -> dict[str, Any]:
    for path in document.get("paths", {}).values():
        for op in path.values():
            if isinstance(op, dict) and "responses" in op:
                op["responses"] = {str(k): v for k, v in op["responses"].items()}
    return document


def declare_bearer_auth(
    document: dict[str, Any],
    *,
    version: int,
    kinds: Mapping[tuple[str, str], str],
    is_open: Callable[[str], bool],
) -> None:
    """Declare the bearer token and the operations that need it (auth is on).

    ``kinds`` gives the kind of each operation, by path and method (from
    the route table).

    The Swagger UI then shows its Authorize button.  Swagger 2.0 has no
    bearer scheme: there the token is an ``Authorization`` header, typed
    as ``Bearer <token>``; OpenAPI 3 declares it as HTTP bearer.
    """
    about = "A bearer token (static, or an OpenID Connect access token)"
    if version == 2:
        scheme: dict[str, Any] = {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": f"{about}: type 'Bearer <token>'",
        }
        document["securityDefinitions"] = {"bearer": scheme}
    else:
        scheme = {"type": "http", "scheme": "bearer", "description": about}
        document.setdefault("components", {})["securitySchemes"] = {"bearer": scheme}
    errors = _error_responses(version, 401, 403)
    for path, item in document.get("paths", {}).items():
        for method, op in item.items():
            if method == "parameters" or not isinstance(op, dict):
                continue
            if is_open(kinds[(path, method)]):
                op["security"] = []
                continue
            op["security"] = [{"bearer": []}]
            for code, answer in errors.items():
                op["responses"].setdefault(str(code), answer)
