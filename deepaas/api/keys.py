"""Typed keys under which the application keeps its state."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from deepaas.api.capture import DebugCapture
from deepaas.engine.execution import Executor
from deepaas.training import TrainingService

#: Largest body read into memory (JSON, url-encoded forms, multipart fields):
#: such bodies take about four times their size while they are parsed.
DEFAULT_CLIENT_MAX_SIZE = 16 * 1024 * 1024
#: Largest multipart body; its files are streamed to disk, not held in memory.
DEFAULT_UPLOAD_MAX_SIZE = 1024 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ApiSettings:
    """The options that shape the API, validated where they enter."""

    predict_endpoint: bool = True
    train_endpoint: bool = True
    debug_endpoint: bool = False
    doc_endpoint: bool = True
    base_path: str = ""
    client_max_size: int = DEFAULT_CLIENT_MAX_SIZE
    upload_max_size: int = DEFAULT_UPLOAD_MAX_SIZE
    upload_dir: str | None = None
    #: Serve Prometheus metrics at /metrics and count every request for them.
    metrics: bool = True
    #: Log one line per request (logger aiohttp.access, level INFO).
    access_log: bool = True
    #: Append a provenance record of each answered prediction to this file.
    provenance_log: str | None = None

    def __post_init__(self) -> None:
        path = self.base_path.strip()
        if path and not path.startswith("/"):
            path = "/" + path
        object.__setattr__(self, "base_path", path.rstrip("/"))
        for option, value in (
            ("--client-max-size", self.client_max_size),
            ("--upload-max-size", self.upload_max_size),
        ):
            if value < 0:
                raise ValueError(f"{option} must be >= 0 (got {value})")


SETTINGS = web.AppKey("deepaas_settings", ApiSettings)
EXECUTORS = web.AppKey("deepaas_executors", dict[str, Executor])
TRAININGS = web.AppKey("deepaas_trainings", TrainingService)
DEBUG_CAPTURE = web.AppKey("deepaas_debug_capture", DebugCapture)
SPEC_CACHE = web.AppKey("deepaas_spec_cache", dict[str, Any])
