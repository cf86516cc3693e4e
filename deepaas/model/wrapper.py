"""ModelWrapper: one uniform face over module, class and object models.

A DEEPaaS V2 model is whatever its entry point resolves to: a module of
functions, a class (instantiated once, with no arguments) or an object.
Every method but ``predict`` is optional.  The wrapper reads them once,
parses arguments with the model's own fields, calls the model and turns its
answer into bytes ready for the wire, so that a worker process can hand the
HTTP process a finished body.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import marshmallow
from marshmallow import fields

from deepaas.exceptions import (
    DeepaasError,
    GpuContextLost,
    GpuOutOfMemory,
    MethodNotImplemented,
    ModelError,
    ModelLoadError,
    ResponseInvalid,
    model_http_error,
)
from deepaas.model import arguments as args_mod
from deepaas.model._signature import check_signature
from deepaas.model.description import (
    RESPONSE_SCHEMA_NAME,
    ModelDescription,
    describe_method,
    describe_response_schema,
)
from deepaas.model.files import UploadedFile
from deepaas.model.gpu_faults import gpu_failed_message, is_gpu_context_lost
from deepaas.model.gpu_memory import is_gpu_out_of_memory, out_of_memory_message
from deepaas.model.loading import ModelSpec, load_model

LOG = logging.getLogger(__name__)

JSON_MEDIA_TYPE = "application/json"
METADATA_KEYS = (
    "id",
    "name",
    "description",
    "author",
    "author-email",
    "version",
    "license",
    "url",
    "summary",
    "home-page",
    "links",
)


@dataclasses.dataclass
class RawArguments:
    """Arguments as they arrived, before the model's fields convert them.

    ``pairs`` holds query-string and form items in order (values are strings
    or :class:`~deepaas.model.files.UploadedFile`); ``json_body`` a JSON
    object's already-typed values.
    """

    pairs: list[tuple[str, Any]] = dataclasses.field(default_factory=list)
    json_body: dict[str, Any] | None = None

    def uploads(self) -> list[UploadedFile]:
        """The uploaded files among the arguments."""
        return [v for _, v in self.pairs if isinstance(v, UploadedFile)]


@dataclasses.dataclass
class PredictOutcome:
    """A finished answer: the body bytes and their media type."""

    body: bytes
    content_type: str = JSON_MEDIA_TYPE


def _json_default(value: Any) -> Any:
    """Encode what models commonly return beside plain JSON (numpy values)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# One encoder for every answer: json.dumps(default=...) builds a new one per call.
_ENCODER = json.JSONEncoder(default=_json_default)


def to_json_bytes(value: Any) -> bytes:
    """Serialize a model answer to JSON, numpy values included."""
    return _ENCODER.encode(value).encode()


def model_error(exc: BaseException) -> ModelError:
    """The domain error for an exception a model raised: a refusal (an aiohttp
    HTTP error), a GPU its process can no longer use, an exhausted GPU, or
    else a plain :class:`ModelError`.

    A lost CUDA context goes first: when a model's error chain holds both,
    the process must be replaced whatever else went wrong.
    """
    trace = "".join(traceback.format_exception(exc))
    refusal = model_http_error(exc, traceback=trace)  # web.HTTPBadRequest & co.
    if refusal is not None:
        return refusal
    if is_gpu_context_lost(exc):
        return GpuContextLost(gpu_failed_message(exc), traceback=trace)
    if is_gpu_out_of_memory(exc):
        return GpuOutOfMemory(out_of_memory_message(exc), traceback=trace)
    message = str(exc) or type(exc).__name__
    return ModelError(f"{type(exc).__name__}: {message}", traceback=trace)


class ModelWrapper:
    """Calls one model through the DEEPaaS V2 interface."""

    def __init__(self, name: str, model: Any) -> None:
        self.name = name
        self.model = model
        self._predict_fields = self._read_fields("get_predict_args")
        self._train_fields = self._read_fields("get_train_args")
        self.predict_schema = args_mod.build_schema(
            self._predict_fields, f"{_class_safe(name)}PredictArgs"
        )
        self.train_schema = args_mod.build_schema(
            self._train_fields, f"{_class_safe(name)}TrainArgs"
        )
        self.response_schema = self._read_response_schema()
        self.accept = args_mod.accept_choices(self._predict_fields)
        for method_name, schema in (
            ("predict", self.predict_schema),
            ("train", self.train_schema),
        ):
            method = self._method(method_name)
            if method is not None:
                check_signature(
                    name, method_name, method, schema, f"get_{method_name}_args"
                )

    # -- reading the model -------------------------------------------------

    def _method(self, name: str) -> Callable[..., Any] | None:
        method = getattr(self.model, name, None)
        return method if callable(method) else None

    def has(self, name: str) -> bool:
        """Whether the model provides the method ``name``."""
        return self._method(name) is not None

    def _read_fields(self, getter: str) -> dict[str, fields.Field]:
        method = self._method(getter)
        if method is None:
            return {}
        try:
            result = method()
        except NotImplementedError:
            return {}  # BaseModel's own method: no arguments, as in DEEPaaS 2.x
        except Exception as exc:
            raise ModelLoadError(
                f"model {self.name!r}: {getter}() raised {type(exc).__name__}: {exc}"
            ) from exc
        if result is None:
            return {}
        if isinstance(result, marshmallow.Schema):
            return dict(result.fields)
        if isinstance(result, type) and issubclass(result, marshmallow.Schema):
            return dict(result().fields)
        if not isinstance(result, Mapping):
            raise ModelLoadError(
                f"model {self.name!r}: {getter}() must return a dict of fields "
                f"(got {type(result).__name__})"
            )
        for arg, field in result.items():
            if not isinstance(field, fields.Field):
                raise ModelLoadError(
                    f"model {self.name!r}: {getter}() argument {arg!r} is not a "
                    f"marshmallow field (got {type(field).__name__})"
                )
        return dict(result)

    def _read_response_schema(self) -> marshmallow.Schema | None:
        schema = getattr(self.model, "schema", None)
        if schema is None:
            return None
        if isinstance(schema, marshmallow.Schema):
            return schema
        if isinstance(schema, type) and issubclass(schema, marshmallow.Schema):
            return schema()
        if isinstance(schema, Mapping):
            return marshmallow.Schema.from_dict(
                dict(schema), name=RESPONSE_SCHEMA_NAME
            )()
        raise ModelLoadError(
            f"model {self.name!r}: 'schema' must be a marshmallow Schema or a dict "
            f"of fields (got {type(schema).__name__})"
        )

    def metadata(self) -> dict[str, Any]:
        """The model's metadata, with the contract's fallback when it fails."""
        fallback = {
            "id": "0",
            "name": self.name,
            "description": "No metadata is provided by this model.",
        }
        method = self._method("get_metadata")
        if method is None:
            return fallback
        try:
            meta = method()
        except NotImplementedError:
            return fallback  # BaseModel's own method: no metadata given
        except Exception:
            LOG.exception("model %r: get_metadata() failed; using defaults", self.name)
            return fallback
        if not isinstance(meta, Mapping):
            LOG.warning(
                "model %r: get_metadata() returned %s, not a dict; using defaults",
                self.name,
                type(meta).__name__,
            )
            return fallback
        result = dict(meta)
        result.setdefault("id", self.name)  # the entry-point name, as in 2.x
        result.setdefault("name", self.name)
        result.setdefault("description", "")
        try:
            encoded = to_json_bytes(result)
        except (TypeError, ValueError):
            LOG.warning("model %r: metadata is not JSON; using defaults", self.name)
            return fallback
        return json.loads(encoded)

    def resources(self, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What the model asks for, e.g. ``{"gpus": 1}`` (see docs/gpus.md).

        ``metadata`` is what :meth:`metadata` returned, when the caller has
        it already: ``get_metadata`` may be slow, so it is called once.
        """
        declared = getattr(self.model, "resources", None)
        if declared is None:
            if metadata is None:
                meta_method = self._method("get_metadata")
                try:
                    metadata = meta_method() if meta_method else {}
                except Exception:
                    metadata = {}
            if isinstance(metadata, Mapping):
                declared = metadata.get("resources")
        if declared is None:
            return {}
        if not isinstance(declared, Mapping):
            raise ModelLoadError(
                f"model {self.name!r}: 'resources' must be a dict such as "
                f"{{'gpus': 1}} (got {declared!r})"
            )
        return dict(declared)

    def describe(self) -> ModelDescription:
        """Everything the HTTP layer needs, without the model itself."""
        v2, v3 = describe_response_schema(self.response_schema)
        batching: dict[str, Any] = {}
        if self.has("predict_batch"):
            batching = {
                "max_batch_size": int(getattr(self.model, "max_batch_size", 8)),
                "batch_timeout": float(getattr(self.model, "batch_timeout", 0.01)),
            }
        metadata = self.metadata()
        return ModelDescription(
            name=self.name,
            metadata=metadata,
            predict=describe_method(
                self._predict_fields, available=self.has("predict")
            ),
            train=describe_method(self._train_fields, available=self.has("train")),
            accept=list(self.accept),
            response_definitions_v2=v2,
            response_schemas_v3=v3,
            resources=self.resources(metadata),
            batching=batching,
        )

    # -- calling the model -------------------------------------------------

    def warm(self) -> None:
        """Run the model's ``warm()`` if it has one."""
        method = self._method("warm")
        if method is None:
            return
        try:
            _resolve(method())
        except NotImplementedError:
            LOG.debug("model %r does not implement warm()", self.name)
        except Exception as exc:
            raise model_error(exc) from exc

    def parse_predict_args(
        self,
        raw: RawArguments,
        accept: str | None = None,
        *,
        waive: args_mod.WaivedCheck | None = None,
    ) -> dict[str, Any]:
        """Validate predict arguments; ``accept`` is the negotiated media type.

        ``waive``: see :func:`deepaas.model.arguments.parse_arguments`.
        """
        if not self.has("predict"):
            raise MethodNotImplemented(
                f"model {self.name!r} does not implement predict"
            )
        pairs = raw.pairs
        json_body = raw.json_body
        if accept is not None and "accept" in self.predict_schema.fields:
            pairs = [(k, v) for k, v in pairs if k != "accept"]
            pairs.append(("accept", accept))
        if accept is not None and json_body and "accept" in json_body:
            json_body = {k: v for k, v in json_body.items() if k != "accept"}
        return args_mod.parse_arguments(
            self.predict_schema, pairs, json_body, waive=waive
        )

    def parse_train_args(
        self, raw: RawArguments, *, waive: args_mod.WaivedCheck | None = None
    ) -> dict[str, Any]:
        """Validate training arguments with the model's train fields.

        ``waive``: see :func:`deepaas.model.arguments.parse_arguments`.
        """
        if not self.has("train"):
            raise MethodNotImplemented(f"model {self.name!r} does not implement train")
        return args_mod.parse_arguments(
            self.train_schema, raw.pairs, raw.json_body, waive=waive
        )

    def call(self, method_name: str, kwargs: Mapping[str, Any]) -> Any:
        """Call a model method; model exceptions become :class:`ModelError`."""
        method = self._method(method_name)
        if method is None:
            raise MethodNotImplemented(
                f"model {self.name!r} does not implement {method_name}"
            )
        try:
            return _resolve(method(**kwargs))
        except DeepaasError:
            raise
        except Exception as exc:
            raise self.call_error(method_name, exc) from exc

    def call_error(self, method_name: str, exc: Exception) -> DeepaasError:
        """The domain error for an exception a model method raised."""
        if isinstance(exc, NotImplementedError):
            # What BaseModel's own methods raise; DEEPaaS 2.x answers 501.
            return MethodNotImplemented(
                f"model {self.name!r} does not implement {method_name}"
                + (f": {exc}" if str(exc) else "")
            )
        return model_error(exc)

    def finish_predict(self, result: Any, accept: str | None) -> PredictOutcome:
        """Turn what ``predict`` returned into the answer's bytes."""
        result = read_if_file(result)
        if isinstance(result, (bytes, bytearray, memoryview)):
            media = accept if accept and accept != "*/*" else "application/octet-stream"
            return PredictOutcome(bytes(result), media)
        if accept and not is_json_media_type(accept):
            if isinstance(result, str):
                return PredictOutcome(result.encode(), accept)
        body = (
            result
            if self.response_schema is not None
            else {
                "status": "OK",
                "predictions": result,
            }
        )
        try:
            encoded = to_json_bytes(body)
        except (TypeError, ValueError) as exc:
            raise ResponseInvalid(
                f"model {self.name!r} returned a value that is not JSON: {exc}"
            ) from None
        if self.response_schema is not None:
            # Validate what the client will read, so numpy values count too.
            errors = self.response_schema.validate(json.loads(encoded))
            if errors:
                raise ResponseInvalid(
                    f"model {self.name!r} returned an answer that does not match "
                    f"its response schema: {errors}"
                )
        return PredictOutcome(encoded, JSON_MEDIA_TYPE)

    def run_predict(
        self, raw: RawArguments, accept: str | None = None
    ) -> PredictOutcome:
        """Parse, call ``predict`` and finish the answer, all in this thread."""
        kwargs = self.parse_predict_args(raw, accept)
        chosen = kwargs.get("accept", accept)
        return self.finish_predict(self.call("predict", kwargs), chosen)


def load_wrapped(
    spec: ModelSpec, *, warm: bool = False, model: Any = None
) -> ModelWrapper:
    """Import the model of ``spec`` (unless ``model`` is given), wrap it and,
    with ``warm``, run its ``warm()``: how every process starts a model."""
    wrapper = ModelWrapper(spec.name, load_model(spec) if model is None else model)
    if warm:
        wrapper.warm()
    return wrapper


def read_if_file(result: Any) -> Any:
    """An open file a model returned, read into bytes and closed; else as is."""
    if not hasattr(result, "read"):
        return result
    try:
        data = result.read()
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return data.encode() if isinstance(data, str) else bytes(data)


def is_json_media_type(media_type: str) -> bool:
    """Whether answering ``media_type`` means answering JSON."""
    return media_type in ("*/*", JSON_MEDIA_TYPE) or media_type.endswith("+json")


def _class_safe(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


# What models usually return: surely not awaitable, no need to ask inspect.
_PLAIN_TYPES = frozenset({str, bytes, dict, list, tuple, int, float, bool, type(None)})


def _resolve(value: Any) -> Any:
    """Run a coroutine a model returned, from a thread with no running loop."""
    if type(value) in _PLAIN_TYPES:
        return value
    if inspect.isawaitable(value):
        return asyncio.run(_await(value))
    return value


async def _await(value: Any) -> Any:
    return await value


__all__ = [
    "ModelWrapper",
    "load_wrapped",
    "PredictOutcome",
    "RawArguments",
    "to_json_bytes",
]
