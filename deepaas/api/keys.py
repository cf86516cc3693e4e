"""Typed keys under which the application keeps its state."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from deepaas.api.capture import DebugCapture
from deepaas.api.settings import ApiSettings
from deepaas.engine.executor import Executor
from deepaas.training import TrainingService

SETTINGS = web.AppKey("deepaas_settings", ApiSettings)
EXECUTORS = web.AppKey("deepaas_executors", dict[str, Executor])
TRAININGS = web.AppKey("deepaas_trainings", TrainingService)
DEBUG_CAPTURE = web.AppKey("deepaas_debug_capture", DebugCapture)
SPEC_CACHE = web.AppKey("deepaas_spec_cache", dict[str, Any])

__all__ = [
    "DEBUG_CAPTURE",
    "EXECUTORS",
    "SETTINGS",
    "SPEC_CACHE",
    "TRAININGS",
]
