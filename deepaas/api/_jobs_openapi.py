"""Prediction jobs in both API descriptions: the PredictJob schema, its paths.

Kept apart from :mod:`deepaas.api.openapi`, which adds them per model that
predicts; the 2.x paths and operations stay exactly as they were, and the
predict operation only gains its 202 answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deepaas.model.description import ModelDescription

#: Where a model's jobs live, relative to ``/v2/models/<name>/``.
JOBS = "predict/jobs/"
JOB = "predict/jobs/{job_id}"

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


def job_paths(
    desc: ModelDescription, version: int, errors: Callable[..., dict[int, Any]]
) -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(suffix, operations, path parameters) of one model's job routes.

    ``errors`` gives the shared error answers of the given status codes.
    """
    tags = [desc.name]
    job = _json(_ref(version), version)
    listing = {"type": "array", "items": _ref(version)}
    produces = desc.accept or ["application/json"]
    result: dict[str, Any] = {
        "tags": tags,
        "summary": "The job's result, with the media type the model answered; "
        "for a failed job, the error answer predict would have given (its "
        "status and JSON body); 409 while the job has not ended",
        "operationId": f"predict_job_result_{desc.name}",
        "responses": {
            200: {"description": "The prediction"},
            **errors(version, 400, 402, 404, 409, 422, 500, 501, 503, 504),
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
    record = _json({"type": "object"}, version)
    return [
        (
            JOBS,
            {
                "get": {
                    "tags": tags,
                    "summary": "List the prediction jobs of this model",
                    "operationId": f"list_predict_jobs_{desc.name}",
                    "responses": {
                        200: {"description": "Jobs", **_json(listing, version)},
                        **errors(version, 402, 501),
                    },
                }
            },
            [],
        ),
        (
            JOB,
            {
                "get": {
                    "tags": tags,
                    "summary": "Status of a prediction job",
                    "operationId": f"get_predict_job_{desc.name}",
                    "responses": {
                        200: {"description": "The job", **job},
                        **errors(version, 400, 402, 404),
                    },
                },
                "delete": {
                    "tags": tags,
                    "summary": "Cancel a queued or running job, or forget an "
                    "ended one with its result",
                    "operationId": f"delete_predict_job_{desc.name}",
                    "responses": {
                        200: {"description": "The job", **job},
                        **errors(version, 400, 402, 404, 409),
                    },
                },
            },
            [_job_id(version)],
        ),
        (f"{JOB}/result", {"get": result}, [_job_id(version)]),
        (
            f"{JOB}/provenance",
            {
                "get": {
                    "tags": tags,
                    "summary": "The provenance record of a job that has ended: a "
                    "W3C PROV-JSON document (model package and version, "
                    "arguments, SHA-256 of inputs and result, times, host, "
                    "devices, outcome)",
                    "operationId": f"predict_job_provenance_{desc.name}",
                    "responses": {
                        200: {"description": "PROV-JSON document", **record},
                        **errors(version, 400, 402, 404),
                    },
                }
            },
            [_job_id(version)],
        ),
    ]


__all__ = ["accepted_answer", "job_paths", "job_schema"]
