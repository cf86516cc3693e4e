"""What docs/trainings.md promises, each checked through a real server.

Another server's training answers 409; processes a training leaves behind
are ended; the model learns its directory from ``DEEPAAS_TRAINING_DIR``;
the retention rules apply when a server starts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from deepaas.api import ApiSettings, create_app
from deepaas.cmd._settings import training_settings
from deepaas.config import build_config
from deepaas.engine.build import build_executors
from deepaas.training import Training, TrainingService, training_service_from_settings
from deepaas.training.backends.local import LocalBackend
from tests.conftest import spec
from tests.processes import pid_running, poll, wait_for_file

DAY = 86400


async def serve(aiohttp_client: Any, model: str, service: TrainingService) -> Any:
    executors = build_executors([spec(model)], workers=0)
    app = create_app(executors, settings=ApiSettings(), trainings=service)
    return await aiohttp_client(app)


async def post(client: Any, model: str, **params: Any) -> dict[str, Any]:
    resp = await client.post(
        f"/v2/models/{model}/train/", params={k: str(v) for k, v in params.items()}
    )
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def wait_status(
    client: Any, model: str, uuid: str, *statuses: str, timeout: float = 60
) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        body = await (await client.get(f"/v2/models/{model}/train/{uuid}")).json()
        return body if body["status"] in statuses else None

    return await poll(reached, f"training {uuid} to be {statuses}", timeout)


@pytest.mark.slow
async def test_a_training_of_another_server_answers_409_there(
    installed_models, aiohttp_client, tmp_path
):
    state = tmp_path / "state"
    runner = await serve(
        aiohttp_client,
        "trainer",
        TrainingService(state, backend=LocalBackend(cancel_grace=2)),
    )
    other = await serve(aiohttp_client, "trainer", TrainingService(state))
    uuid = (await post(runner, "trainer", seconds=60))["uuid"]
    url = f"/v2/models/trainer/train/{uuid}"

    seen = await (await other.get(url)).json()
    assert seen["status"] == "running"  # it shares the store...
    refused = await other.delete(url)  # ...but not the process
    body = await refused.json()
    assert refused.status == 409, body
    assert "run by another server" in body["message"]
    assert "cancel it there" in body["message"]
    assert (await (await runner.get(url)).json())["status"] == "running"

    cancelled = await (await runner.delete(url)).json()
    assert cancelled["status"] == "cancelled"
    assert (await (await other.get(url)).json())["status"] == "cancelled"


@pytest.mark.slow
async def test_processes_left_behind_are_ended_when_train_returns(
    installed_models, aiohttp_client, tmp_path
):
    client = await serve(
        aiohttp_client, "trainer", TrainingService(
            tmp_path / "state", backend=LocalBackend(cancel_grace=1)
        )
    )
    for stubborn in (False, True):
        record = tmp_path / f"record-{stubborn}"
        record.mkdir()
        # train() starts a child that sleeps for two minutes, and returns.
        uuid = (
            await post(client, "trainer", child=True, stubborn=stubborn, record=record)
        )["uuid"]
        child = int(await wait_for_file(record / "child.pid", timeout=60))
        done = await wait_status(client, "trainer", uuid, "done", "error")
        assert done["status"] == "done"
        # Gone (not even a zombie) once the training is recorded as done.
        assert not pid_running(child)
        logs = await (await client.get(f"/v2/models/trainer/train/{uuid}/logs")).text()
        # The one that ignores SIGTERM is killed after the grace period.
        assert ("processes left behind were killed" in logs) is stubborn


@pytest.mark.slow
async def test_the_model_knows_its_training_directory(
    installed_models, aiohttp_client, tmp_path
):
    service = TrainingService(tmp_path / "state")
    client = await serve(aiohttp_client, "printer", service)
    uuid = (await post(client, "printer", lines=1))["uuid"]
    done = await wait_status(client, "printer", uuid, "done", "error")
    job_dir = service.state_dir / "trainings" / uuid
    assert done["result"]["output"]["dir"] == str(job_dir)
    # What the model wrote there stays with the training, beside its log.
    assert (job_dir / "checkpoint").read_text() == uuid
    assert (job_dir / "training.log").exists()


def _finished(
    service: TrainingService, uuid: str, days_ago: float, status: str = "done"
) -> Path:
    job_dir = service.state_dir / "trainings" / uuid
    job_dir.mkdir(parents=True)
    (job_dir / "training.log").write_text("epoch 1\n")
    ended = time.time() - days_ago * DAY
    service.store.insert(
        Training(
            uuid=uuid,
            model="trainer",
            status=status,
            args={},
            submitted_at=ended - 60,
            started_at=ended - 60,
            finished_at=ended,
            job_dir=f"trainings/{uuid}",
            owner="f" * 32,
            owner_host="elsewhere",
            owner_pid=424242,
        )
    )
    return job_dir


async def test_the_retention_options_apply_when_a_server_starts(tmp_path):
    state = tmp_path / "state"
    seed = TrainingService(state)
    await seed.start()
    dirs = {days: _finished(seed, f"{days:032x}", days) for days in (1, 2, 5, 9)}
    await seed.close()

    def started_with(*options: str) -> TrainingService:
        conf = build_config(["--state-dir", str(state), *options])
        settings = training_settings(conf)
        service = training_service_from_settings([spec("trainer")], {}, settings, {})
        assert service is not None
        return service

    by_age = started_with("--keep-trainings-days", "3")
    await by_age.start()
    try:
        kept = {t.uuid for t in await by_age.list("trainer")}
        assert kept == {f"{1:032x}", f"{2:032x}"}
        assert not dirs[5].exists() and not dirs[9].exists()
        assert dirs[1].exists() and dirs[2].exists()
    finally:
        await by_age.close()

    by_count = started_with("--keep-trainings", "1")
    await by_count.start()
    try:
        assert [t.uuid for t in await by_count.list("trainer")] == [f"{1:032x}"]
        assert not dirs[2].exists() and dirs[1].exists()
    finally:
        await by_count.close()
