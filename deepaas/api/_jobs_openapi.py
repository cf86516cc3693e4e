"""Prediction jobs in both API descriptions: the PredictJob schema, its paths.

Kept apart from :mod:`deepaas.api.openapi`: the job routes
(:mod:`deepaas.api.jobs`) name these operation builders, which document
them for each model that predicts; the 2.x paths and operations stay
exactly as they were, and the predict operation only gains its 202 answer.
"""

from __future__ import annotations

from typing import Any

from deepaas.api._openapi_parts import error_responses
from deepaas.api.routes import DocContext, Documented
from deepaas.model.description import ModelDescription

_STATUSES = ["queued", "running", "done", "error", "cancelled", "interrupted"]

_PROPERTIES: dict[str, Any] = {
    "uuid": {"type": "string", "description": "Identifier of the job"},
    "model": {"type": "string", "description": "The model that predicts"},
    "status": {
        "type": "string",
        "enum": _STATUSES,
        "description": "queued (waiting for its turn, or for SLURM), running, "
        "then done, error (its result is the error answer), cancelled (by a "
        "DELETE) or interrupted (its server stopped before it finished)",
    },
    "date": {"type": "string", "description": "When it was submitted"},
    "start_date": {"type": "string", "description": "When it started running"},
    "finish_date": {"type": "string", "description": "When it ended"},
    "args": {"type": "object", "description": "The arguments as sent"},
    "accept": {
        "description": "The media type chosen at submission (Accept header or "
        "accept argument); null for a model without choices",
    },
    "media_type": {
        "type": "string",
        "description": "The media type of the result, once there is one",
    },
    "message": {"type": "string", "description": "Why it failed or ended"},
    "result": {
        "type": "object",
        "description": "Once done: href, media_type, size, finish_date, duration",
    },
    "links": {"type": "array", "items": {"type": "object"}},
    "slurm": {
        "type": "object",
        "description": "Jobs run by SLURM (--train-backend slurm) only: job_id, "
        "and SLURM's state of the job and reason for it when a server last asked",
    },
}


def job_schema(version: int) -> dict[str, Any]:
    """A prediction job as answered."""
    properties = dict(_PROPERTIES)
    if version == 2:
        properties["accept"] = {
            "type": "string",
            "x-nullable": True,
            "description": _PROPERTIES["accept"]["description"],
        }
    else:
        properties["accept"] = {
            "type": ["string", "null"],
            "description": _PROPERTIES["accept"]["description"],
        }
    return {"type": "object", "properties": properties}


def _json(schema: dict[str, Any], version: int) -> dict[str, Any]:
    if version == 2:
        return {"schema": schema}
    return {"content": {"application/json": {"schema": schema}}}


def _ref(version: int) -> dict[str, Any]:
    where = "#/definitions" if version == 2 else "#/components/schemas"
    return {"$ref": f"{where}/PredictJob"}


def accepted_answer(version: int) -> dict[str, Any]:
    """The predict operation's 202: what ``Prefer: respond-async`` answers."""
    return {
        "description": "With the header Prefer: respond-async, the prediction "
        "runs as a job: its record, named by the Location header "
        "(Preference-Applied: respond-async)",
        **_json(_ref(version), version),
    }


def _job_id(version: int) -> dict[str, Any]:
    param: dict[str, Any] = {
        "name": "job_id",
        "in": "path",
        "required": True,
        "description": "The job's uuid, as answered by POST .../predict/",
    }
    pattern = "^[0-9a-fA-F]{32}$"
    if version == 2:
        param.update(type="string", pattern=pattern)
    else:
        param["schema"] = {"type": "string", "pattern": pattern}
    return param


def _jobs_of(context: DocContext) -> ModelDescription | None:
    """The model whose jobs are documented; None when it does not predict."""
    desc = context.model
    if desc is None:
        raise ValueError("a model's jobs are documented for a model")
    return desc if desc.predict.available else None


def list_jobs_operation(context: DocContext) -> Documented:
    """GET .../predict/jobs/: the model's jobs."""
    desc = _jobs_of(context)
    if desc is None:
        return None
    version = context.version
    listing = {"type": "array", "items": _ref(version)}
    operation = {
        "tags": [desc.name],
        "summary": "List the prediction jobs of this model",
        "operationId": f"list_predict_jobs_{desc.name}",
        "responses": {
            200: {"description": "Jobs", **_json(listing, version)},
            **error_responses(version, 402, 501),
        },
    }
    return operation, []


def get_job_operation(context: DocContext) -> Documented:
    """GET .../predict/jobs/<id>: a job."""
    desc = _jobs_of(context)
    if desc is None:
        return None
    version = context.version
    operation = {
        "tags": [desc.name],
        "summary": "Status of a prediction job",
        "operationId": f"get_predict_job_{desc.name}",
        "responses": {
            200: {"description": "The job", **_json(_ref(version), version)},
            **error_responses(version, 400, 402, 404),
        },
    }
    return operation, [_job_id(version)]


def delete_job_operation(context: DocContext) -> Documented:
    """DELETE .../predict/jobs/<id>: cancel or forget a job."""
    desc = _jobs_of(context)
    if desc is None:
        return None
    version = context.version
    operation = {
        "tags": [desc.name],
        "summary": "Cancel a queued or running job, or forget an "
        "ended one with its result",
        "operationId": f"delete_predict_job_{desc.name}",
        "responses": {
            200: {"description": "The job", **_json(_ref(version), version)},
            **error_responses(version, 400, 402, 404, 409),
        },
    }
    return operation, [_job_id(version)]


def job_result_operation(context: DocContext) -> Documented:
    """GET .../predict/jobs/<id>/result: what the job's prediction answered."""
    desc = _jobs_of(context)
    if desc is None:
        return None
    version = context.version
    produces = desc.accept or ["application/json"]
    result: dict[str, Any] = {
        "tags": [desc.name],
        "summary": "The job's result, with the media type the model answered; "
        "for a failed job, the error answer predict would have given (its "
        "status and JSON body); 409 while the job has not ended",
        "operationId": f"predict_job_result_{desc.name}",
        "responses": {
            200: {"description": "The prediction"},
            **error_responses(version, 400, 402, 404, 409, 422, 500, 501, 503, 504),
        },
    }
    result["responses"][409] = {
        **result["responses"][409],
        "description": "The job has not ended, or ended without a result "
        "(cancelled, interrupted)",
    }
    if version == 2:
        result["produces"] = list(dict.fromkeys([*produces, "application/json"]))
    else:
        result["responses"][200]["content"] = {
            media: {"schema": {"type": "string", "format": "binary"}}
            for media in produces
        }
    return result, [_job_id(version)]


def job_provenance_operation(context: DocContext) -> Documented:
    """GET .../predict/jobs/<id>/provenance: the job's provenance record."""
    desc = _jobs_of(context)
    if desc is None:
        return None
    version = context.version
    operation = {
        "tags": [desc.name],
        "summary": "The provenance record of a job that has ended: a "
        "W3C PROV-JSON document (model package and version, "
        "arguments, SHA-256 of inputs and result, times, host, "
        "devices, outcome)",
        "operationId": f"predict_job_provenance_{desc.name}",
        "responses": {
            200: {
                "description": "PROV-JSON document",
                **_json({"type": "object"}, version),
            },
            **error_responses(version, 400, 402, 404),
        },
    }
    return operation, [_job_id(version)]


__all__ = [
    "accepted_answer",
    "delete_job_operation",
    "get_job_operation",
    "job_provenance_operation",
    "job_result_operation",
    "job_schema",
    "list_jobs_operation",
]
