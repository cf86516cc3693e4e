"""The domain errors of deepaas.

Each carries the HTTP status it maps to, so that the API turns them into
answers in one place (``deepaas.api.errors``) and the console scripts into a
one-line message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DeepaasError(Exception):
    """Base of every error deepaas raises on purpose."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, Any]:
        """The JSON body an API client receives for this error."""
        return {"message": self.message}

    def answer_headers(self) -> dict[str, str]:
        """The headers of its answer besides Content-Type (``Retry-After``)."""
        retry_after = getattr(self, "retry_after", None)
        return {"Retry-After": str(retry_after)} if retry_after else {}


class ModelNotFound(DeepaasError):
    """The requested model is not installed (or not served)."""

    status = 404


class MultipleModelsFound(DeepaasError):
    """Several models are installed and none was chosen."""

    status = 500


class ModelLoadError(DeepaasError):
    """A model's entry point could not be imported or instantiated."""

    status = 500


class ModelError(DeepaasError):
    """The model's own code raised while it ran."""

    status = 500

    def __init__(self, message: str, *, traceback: str = "") -> None:
        super().__init__(message)
        self.traceback = traceback


class ModelHTTPError(ModelError):
    """The model raised an HTTP error of aiohttp's to refuse a call.

    DEEPaaS 2.x models raise e.g. ``web.HTTPBadRequest(reason="...")`` for
    an input they cannot handle; the client gets that status, and the
    reason as the message, rather than a 500.
    """

    def __init__(self, message: str, *, status: int, traceback: str = "") -> None:
        super().__init__(message, traceback=traceback)
        self.status = status


def model_http_error(
    exc: BaseException, *, traceback: str = ""
) -> ModelHTTPError | None:
    """The :class:`ModelHTTPError` for an aiohttp HTTP error status >= 400, else None.

    Recognised by class (``aiohttp.web_exceptions.HTTPException`` in its
    bases) so that the model layer needs no aiohttp import, and so that other
    libraries' HTTP errors (a failed download inside the model) stay 500s.
    """
    status = getattr(exc, "status", None)
    if not isinstance(status, int) or not 400 <= status <= 599:
        return None
    if not any(
        cls.__name__ == "HTTPException" and cls.__module__ == "aiohttp.web_exceptions"
        for cls in type(exc).__mro__
    ):
        return None
    reason = getattr(exc, "reason", "") or ""
    text = getattr(exc, "text", "") or ""
    # aiohttp's default text is "<status>: <reason>"; a text of the model's own
    # says more than the reason.
    message = text if text and not text.startswith(f"{status}:") else reason
    return ModelHTTPError(message or str(status), status=status, traceback=traceback)


class GpuOutOfMemory(ModelError):
    """The model's call ran out of GPU memory.

    Its message is ``out of GPU memory: <the framework's message>`` (which
    names the GPU, what was asked and what was free).  The status is 500,
    the status DEEPaaS 2.x answers for any exception of a model, so that
    2.x clients see no change of status; the message says what happened.
    The process that ran the call releases its cached GPU memory and goes
    on serving (:mod:`deepaas.model.gpu_memory`).
    """

    status = 500


class GpuContextLost(ModelError):
    """The model's call hit a CUDA error that leaves its process's GPU unusable.

    A device-side assert, an illegal memory access, an unspecified launch
    failure and the like corrupt the CUDA context of the process: every
    later CUDA call in it fails (:mod:`deepaas.model.gpu_faults`).  Its
    message is ``the GPU failed: <the framework's message>; <what
    happens>``: a worker process answers it, then exits and is replaced by
    a fresh one.  The status is 500, the status DEEPaaS 2.x answers for any
    exception of a model, so that 2.x clients see no change of status; the
    message says what happened.
    """

    status = 500


class MethodNotImplemented(DeepaasError):
    """The model does not provide the called method (e.g. no ``train``)."""

    status = 501


class ArgumentsInvalid(DeepaasError):
    """The arguments of a call do not validate against the model's fields.

    ``errors`` is the flat ``{"<arg>": ["<message>", ...]}`` mapping that the
    contract answers with status 422.
    """

    status = 422

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(f"invalid arguments: {errors}")
        self.errors = errors

    def to_json(self) -> dict[str, Any]:
        return dict(self.errors)


class ResponseInvalid(DeepaasError):
    """The model's answer does not match its declared response schema."""

    status = 500


class InvalidJsonBody(DeepaasError):
    """The request's JSON body does not parse, or is not an object.

    Answered with DEEPaaS 2.x's key, ``{"json": ["Invalid JSON body."]}``,
    plus the usual ``message`` saying what is wrong.
    """

    status = 400

    def to_json(self) -> dict[str, Any]:
        return {"json": ["Invalid JSON body."], "message": self.message}


class QueueFull(DeepaasError):
    """Too many predictions are waiting for a worker."""

    status = 503
    #: Seconds a client should wait before retrying (the Retry-After header).
    retry_after = 1


class WorkerCrashed(DeepaasError):
    """The worker process running a call died before it answered."""

    status = 503
    retry_after = 1  # its replacement is starting


class NotStarted(DeepaasError):
    """The server's start-up failed or was stopped before the models were warm."""

    status = 503


class CallTimeout(DeepaasError):
    """A call took longer than its configured limit."""

    status = 504


class EndpointDisabled(DeepaasError):
    """The endpoint was switched off by configuration (402, as DEEPaaS did)."""

    status = 402


class TrainingNotFound(DeepaasError):
    """No training with that uuid exists for that model."""

    status = 404


class DeviceUnavailable(DeepaasError):
    """The model requires a GPU and none is visible or allowed."""

    status = 500


class InternalError(DeepaasError):
    """An unexpected fault, answered with a reference and no detail.

    The details (a traceback, which may name server paths) go to the log
    under ``reference``; the client gets the reference alone.
    """

    status = 500

    def __init__(self, reference: str) -> None:
        super().__init__(
            "internal server error; the server's log has the details "
            f"under reference {reference}"
        )
        self.reference = reference

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "reference": self.reference}


class ProtocolError(DeepaasError):
    """aiohttp's HTTP server failed a request before any route answered it.

    A request its parser refused (a 4xx: a malformed request line, a header
    too long), a target no route can match, or a fault of its own (a 5xx).
    """

    def __init__(
        self, message: str, *, status: int, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})

    def answer_headers(self) -> dict[str, str]:
        return dict(self.headers)


class RequestRefused(DeepaasError):
    """The server's own rules refuse a request: a token, an origin, a limit.

    Not a fault of the server: never logged as an error.  ``headers`` are
    sent with the answer (e.g. ``WWW-Authenticate``, ``Allow``).
    """

    status = 400

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.headers = dict(headers or {})

    def answer_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        headers.update(super().answer_headers())
        return headers


class Unauthorized(RequestRefused):
    """No bearer token, or one that is not valid (401, with its challenge)."""

    status = 401


class Forbidden(RequestRefused):
    """A valid token that does not give access to this kind of operation."""

    status = 403


class OriginRefused(RequestRefused):
    """A browser's request from an origin that may not act here (403)."""

    status = 403


class HostRefused(RequestRefused):
    """A ``Host`` that is not one of the server's names (421, DNS rebinding)."""

    status = 421


class MethodRefused(RequestRefused):
    """A method the path does not answer (405, with ``Allow``)."""

    status = 405


class AuthUnavailable(RequestRefused):
    """A token cannot be checked now: the OIDC issuer's keys cannot be had.

    Not the client's fault: 503, with ``Retry-After``.
    """

    status = 503

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class HeadersTimeout(RequestRefused):
    """A request's line and headers did not arrive in time (408)."""

    status = 408


class ServerBusy(RequestRefused):
    """The server cannot take the request now (too many connections, or
    shutting down): 503, with ``Retry-After``."""

    status = 503
    retry_after = 1
