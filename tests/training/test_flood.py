"""A flood of training requests is bounded by --max-trainings (issue 11, item 8).

A real server on loopback, real training processes and a real SQLite store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deepaas.api import create_app
from deepaas.engine.build import build_executors
from deepaas.training import TrainingService
from deepaas.training.backends.local import LocalBackend
from tests.conftest import spec

TRAIN = "/v2/models/trainer/train/"


@pytest.fixture
def make_client(installed_models: Any, aiohttp_client: Any) -> Any:
    """A real server on loopback over the ``trainer`` fake model."""

    async def make(name: str, *, trainings: TrainingService) -> Any:
        executors = build_executors([spec(name)], workers=0)
        return await aiohttp_client(create_app(executors, trainings=trainings))

    return make


def service(tmp_path: Path, **local: Any) -> TrainingService:
    """A service whose local backend has the ``local`` options."""
    return TrainingService(
        tmp_path / "state", backend=LocalBackend(cancel_grace=2.0, **local)
    )


async def post(client: Any, **params: Any) -> tuple[int, dict[str, Any], Any]:
    resp = await client.post(TRAIN, params={k: str(v) for k, v in params.items()})
    return resp.status, await resp.json(), resp.headers


@pytest.mark.slow
async def test_past_the_limit_a_training_is_refused_with_503_and_retry_after(
    make_client, tmp_path
):
    trainings = service(tmp_path, max_concurrent=1, max_trainings=3)
    client = await make_client("trainer", trainings=trainings)
    accepted = []
    for _ in range(3):  # one runs, two wait: queued ones count
        status, body, _ = await post(client, seconds=30)
        assert status == 200, body
        accepted.append(body["uuid"])

    status, body, headers = await post(client, seconds=30)
    assert status == 503
    assert headers["Retry-After"] == "30"  # a place frees when a training ends
    assert headers["Content-Type"].startswith("application/json")
    assert "--max-trainings" in body["message"]
    listed = await (await client.get(TRAIN)).json()
    assert sorted(t["uuid"] for t in listed) == sorted(accepted)  # nothing recorded

    # Once one has ended (here: cancelled), there is room for one more.
    resp = await client.delete(f"{TRAIN}{accepted[-1]}")
    assert resp.status == 200
    status, body, _ = await post(client, seconds=30)
    assert status == 200, body
    status, _, _ = await post(client, seconds=30)
    assert status == 503
    await trainings.close()


@pytest.mark.slow
async def test_finished_trainings_do_not_count(make_client, tmp_path):
    trainings = service(tmp_path, max_trainings=1)
    client = await make_client("trainer", trainings=trainings)
    status, first, _ = await post(client, seconds=0)
    assert status == 200, first
    for _ in range(300):
        body = await (await client.get(f"{TRAIN}{first['uuid']}")).json()
        if body["status"] == "done":
            break
        await client.get("/health")  # let the loop breathe between polls
    assert body["status"] == "done", body
    status, body, _ = await post(client, seconds=0)
    assert status == 200, body
    await trainings.close()


@pytest.mark.slow
async def test_zero_means_no_limit(make_client, tmp_path):
    trainings = service(tmp_path, max_concurrent=1, max_trainings=0)
    client = await make_client("trainer", trainings=trainings)
    for _ in range(40):  # past the default of 32
        status, body, _ = await post(client, seconds=30)
        assert status == 200, body
    await trainings.close()


def test_a_negative_limit_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--max-trainings must be >= 0"):
        service(tmp_path, max_trainings=-1)


def test_deepaas_run_has_the_option_with_a_default(tmp_path):
    from deepaas.cmd._settings import training_settings
    from deepaas.config import build_config
    from deepaas.training.config import training_service_from_settings

    assert build_config([]).max_trainings == 32
    conf = build_config(["--max-trainings", "5", "--state-dir", str(tmp_path)])
    built = training_service_from_settings([], {}, training_settings(conf), None)
    assert built is not None and isinstance(built.backend, LocalBackend)
    assert built.backend.max_trainings == 5
