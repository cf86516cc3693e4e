"""Fixtures for API tests: a real server on loopback over chosen models."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from deepaas.api import ApiSettings, create_app
from deepaas.engine.build import build_executors
from tests.conftest import spec

MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_client(installed_models: Any, aiohttp_client: Any) -> MakeClient:
    """Start the API over fake models: ``await make_client("echo", workers=0)``."""

    async def make(*names: str, workers: int = 0, trainings: Any = None,
                   debug_capture: Any = None, max_queue: int = 0,
                   predict_timeout: float = 0, **settings: Any) -> TestClient:
        executors = build_executors(
            [spec(n) for n in names], workers=workers, max_queue=max_queue,
            predict_timeout=predict_timeout,
        )
        app = create_app(executors, settings=ApiSettings(**settings),
                         trainings=trainings, debug_capture=debug_capture)
        return await aiohttp_client(app)

    return make
