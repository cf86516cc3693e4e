"""Pieces that every operation of the API descriptions shares.

JSON bodies and references written for either version (2: Swagger, 3:
OpenAPI 3.1), and the error answers by status code; kept apart so that the
operation builders of :mod:`deepaas.api.openapi` and
:mod:`deepaas.api._jobs_openapi` share them without importing each other.
"""

from __future__ import annotations

from typing import Any

__all__ = ["error_responses", "json_body", "ref"]

_ERROR_TEXTS = {
    400: "Malformed request",
    401: "A bearer token is needed, or the one sent is not valid",
    402: "Endpoint disabled on this server",
    403: "The token does not allow this operation, or another site asked",
    404: "No such model or training",
    408: "The request's body stopped arriving (--body-timeout)",
    409: "Run by another server sharing the state directory; cancel it there",
    413: "Request body too large",
    415: "Unsupported request body type",
    422: "Invalid arguments: {argument: [messages]}",
    500: "The model failed (its message), or the server did (a generic "
    "message with a reference to its log)",
    501: "The model does not implement this method",
    503: "Busy or no worker available; retry after Retry-After seconds",
    504: "The model did not answer in time",
}


def json_body(schema_ref: str | dict[str, Any], version: int) -> dict[str, Any]:
    """A JSON answer of this schema (a reference, or the schema itself)."""
    schema = {"$ref": schema_ref} if isinstance(schema_ref, str) else schema_ref
    if version == 2:
        return {"schema": schema}
    return {"content": {"application/json": {"schema": schema}}}


def ref(name: str, version: int) -> str:
    """Where the document keeps the schema ``name``."""
    return f"#/definitions/{name}" if version == 2 else f"#/components/schemas/{name}"


def error_responses(version: int, *codes: int) -> dict[int, Any]:
    """The error answers of these status codes: JSON bodies, as every error."""
    error = json_body(ref("Error", version), version)
    # 422 answers the contract's flat {argument: [messages]}, not a message.
    invalid = json_body(ref("ValidationErrors", version), version)
    return {
        code: {"description": _ERROR_TEXTS[code], **(invalid if code == 422 else error)}
        for code in codes
    }
