"""Errors as they cross the pipe between the API process and a worker.

Exceptions do not pickle faithfully when their ``__init__`` takes other
arguments than their message, so they travel as plain tuples.
"""

from __future__ import annotations

from typing import Any

from deepaas import exceptions

WireError = tuple[str, str, dict[str, Any]]


def error_to_wire(exc: exceptions.DeepaasError) -> WireError:
    """Flatten a domain error into a picklable tuple."""
    extra: dict[str, Any] = {}
    if isinstance(exc, exceptions.ArgumentsInvalid):
        extra["errors"] = exc.errors
    if isinstance(exc, exceptions.ModelError):
        extra["traceback"] = exc.traceback
    return (type(exc).__name__, exc.message, extra)


def error_from_wire(wire: WireError) -> exceptions.DeepaasError:
    """Rebuild the domain error a worker sent."""
    name, message, extra = wire
    cls = getattr(exceptions, name, None)
    if cls is exceptions.ArgumentsInvalid:
        return exceptions.ArgumentsInvalid(extra.get("errors", {}))
    if cls is exceptions.ModelError:
        return exceptions.ModelError(message, traceback=extra.get("traceback", ""))
    if isinstance(cls, type) and issubclass(cls, exceptions.DeepaasError):
        return cls(message)
    return exceptions.DeepaasError(message)


def is_wire_error(value: Any) -> bool:
    """Whether ``value`` is an error tuple rather than an answer."""
    return (
        isinstance(value, tuple)
        and len(value) == 3
        and isinstance(value[0], str)
        and isinstance(value[2], dict)
    )
