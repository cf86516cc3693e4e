"""The training service itself: options, restart rule, state directory."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest

from deepaas.cmd._settings import training_settings
from deepaas.config import build_config
from deepaas.model.wrapper import RawArguments
from deepaas.training import (
    CANCELLED,
    ERROR,
    RUNNING,
    StateDirUnusable,
    Training,
    TrainingBusy,
    TrainingService,
    default_state_dir,
    training_service_from_settings,
)
from deepaas.training.backends.local import LocalBackend
from deepaas.training.service import INTERRUPTED_BY_RESTART
from tests.conftest import spec


def test_options_come_from_the_configuration(tmp_path):
    conf = build_config([
        "--state-dir", str(tmp_path / "state"),
        "--max-concurrent-trainings", "3",
        "--train-timeout", "60",
        "--train-cancel-grace", "2.5",
        "--keep-trainings", "5",
        "--keep-trainings-days", "7",
    ])
    envs = {"trainer": [{"CUDA_VISIBLE_DEVICES": "0"}],
            "__training__:trainer": {"CUDA_VISIBLE_DEVICES": "1"}}
    service = training_service_from_settings([spec("trainer"), spec("echo")], {},
                                           training_settings(conf), envs)
    assert service is not None
    assert service.state_dir == tmp_path / "state"
    local = service.backend
    assert isinstance(local, LocalBackend)
    assert (local.max_concurrent, local.timeout, local.cancel_grace,
            service.keep, service.keep_days) == (3, 60, 2.5, 5, 7)
    assert local.training_envs == {"trainer": {"CUDA_VISIBLE_DEVICES": "1"}}
    assert not (tmp_path / "state").exists()  # nothing happens before start()


def test_the_default_state_dir_follows_xdg(tmp_path):
    conf = build_config([])
    settings = training_settings(conf)
    service = training_service_from_settings([spec("trainer")], {}, settings, {})
    assert service is not None
    assert service.state_dir == tmp_path / "state" / "deepaas"
    assert default_state_dir({"HOME": "/home/u"}).parts[-3:] == (
        ".local", "state", "deepaas")


def test_no_service_when_the_endpoint_is_off():
    conf = build_config(["--train-endpoint", "false"])
    assert training_settings(conf) is None
    assert training_service_from_settings([spec("trainer")], {}, None, {}) is None


@pytest.mark.parametrize("make, message", [
    (lambda path: LocalBackend(max_concurrent=-1),
     "--max-concurrent-trainings must be >= 0 (got -1)"),
    (lambda path: LocalBackend(timeout=-1), "--train-timeout must be >= 0 (got -1)"),
    (lambda path: TrainingService(path, keep=-3),
     "--keep-trainings must be >= 0 (got -3)"),
])
def test_bad_options_are_refused(tmp_path, make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make(tmp_path)


async def test_an_unusable_state_dir_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    service = TrainingService(blocker)
    with pytest.raises(StateDirUnusable, match="cannot use the state directory"):
        await service.start()


async def test_nothing_is_accepted_before_start(tmp_path):
    service = TrainingService(tmp_path)
    with pytest.raises(StateDirUnusable, match="not running"):
        await service.submit(spec("trainer"), RawArguments(), {})


def _orphan(service: TrainingService, uuid: str, owner: str, status: str) -> Path:
    job_dir = service.state_dir / "trainings" / uuid
    (job_dir / "uploads").mkdir(parents=True)
    (job_dir / "training.log").write_text("epoch 1\n")
    service.store.insert(Training(
        uuid=uuid, model="trainer", status=status, args={}, submitted_at=time.time(),
        started_at=time.time(), job_dir=f"trainings/{uuid}", owner=owner,
        owner_host="elsewhere", owner_pid=424242,
    ))
    return job_dir


async def test_only_trainings_of_stopped_servers_are_interrupted(tmp_path):
    state = tmp_path / "state"
    live = TrainingService(state)
    await live.start()
    dead_dir = _orphan(live, "a" * 32, "f" * 32, RUNNING)
    _orphan(live, "b" * 32, live.server_id, RUNNING)
    _orphan(live, "c" * 32, "f" * 32, "queued")

    newcomer = TrainingService(state)
    await newcomer.start()
    try:
        dead = await newcomer.get("trainer", "a" * 32)
        assert (dead.status, dead.message) == (ERROR, INTERRUPTED_BY_RESTART)
        assert dead.finished_at is not None
        assert "interrupted by a server restart" in (dead_dir / "training.log"
                                                      ).read_text()
        assert not (dead_dir / "uploads").exists()
        assert (await newcomer.get("trainer", "c" * 32)).status == ERROR
        # The other server lives: its training is left alone...
        assert (await newcomer.get("trainer", "b" * 32)).status == RUNNING

        # ...until it stops; the next read notices.
        await live.close()
        assert (await newcomer.get("trainer", "b" * 32)).status == ERROR
    finally:
        await newcomer.close()
        await live.close()


@pytest.mark.slow
async def test_a_training_run_by_another_server_is_cancelled_there(
        installed_models, tmp_path):
    state = tmp_path / "state"
    runner = TrainingService(state, backend=LocalBackend(cancel_grace=1))
    other = TrainingService(state)
    await runner.start()
    await other.start()
    try:
        training = await runner.submit(
            spec("trainer"), RawArguments(pairs=[("seconds", "60")]), {"seconds": 60})
        dashed = str(uuid.UUID(training.uuid))
        assert (await other.get("trainer", dashed)).status == RUNNING
        with pytest.raises(TrainingBusy, match="another server"):
            await other.delete("trainer", dashed)
        assert (await runner.delete("trainer", dashed)).status == CANCELLED
        assert (await other.get("trainer", training.uuid)).status == CANCELLED
    finally:
        await other.close()
        await runner.close()
