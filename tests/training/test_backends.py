"""Training backends: a service hands its trainings to one, local or SLURM.

A user builds a :class:`TrainingService` with the backend of their choice;
the service itself never asks which one it has.  Both backends satisfy
:class:`TrainingBackend`, checked here method by method.
"""

from __future__ import annotations

import inspect
import logging
import time
import uuid

import pytest

from deepaas.model.wrapper import RawArguments
from deepaas.training import (
    CANCELLED,
    DONE,
    RUNNING,
    Training,
    TrainingBusy,
    TrainingService,
)
from deepaas.training.backends import TrainingBackend
from deepaas.training.backends.local import LocalBackend
from deepaas.training.backends.slurm import SlurmBackend, SlurmTraining
from deepaas.training.settings import SlurmSettings
from deepaas.training.store import DATABASE_NAME, TrainingStore
from tests.conftest import spec
from tests.processes import pid_running, poll

#: What the service calls on its backend, and whether it awaits the answer.
PROTOCOL = {
    "describe": False,
    "start": True,
    "close": True,
    "submit": True,
    "cancel": True,
    "known": False,
}


def _slurm_backend(tmp_path):
    return SlurmBackend(tmp_path, TrainingStore(tmp_path / DATABASE_NAME),
                        SlurmSettings(), jobs_dir="trainings", cancel_grace=1,
                        log_level=logging.INFO)


def test_the_protocol_names_what_the_service_calls():
    members = {name for name in vars(TrainingBackend)
               if not name.startswith("_")}
    assert members == {*PROTOCOL, "scheduler"}


@pytest.mark.parametrize(("kind", "scheduler"), [("local", None), ("slurm", "slurm")])
def test_both_backends_satisfy_the_protocol(tmp_path, kind, scheduler):
    backend = LocalBackend() if kind == "local" else _slurm_backend(tmp_path)
    assert isinstance(backend, TrainingBackend)
    assert backend.scheduler == scheduler  # what /metrics asks
    for name, awaited in PROTOCOL.items():
        method = getattr(backend, name)
        assert inspect.iscoroutinefunction(method) == awaited, name
        wanted = inspect.signature(getattr(TrainingBackend, name))
        given = inspect.signature(method)
        # Every argument the service passes is taken, by the same name.
        params = [p for p in wanted.parameters if p != "self"]
        assert list(given.parameters)[: len(params)] == params, name


def test_a_backend_missing_a_method_is_no_backend():
    class NoCancel:
        scheduler = None

        def describe(self) -> str:
            return "never"

        async def start(self, link):
            pass

        async def close(self):
            pass

        async def submit(self, spec, raw, args):
            raise NotImplementedError

        def known(self, training):
            return training

    assert not isinstance(NoCancel(), TrainingBackend)
    NoCancel.cancel = lambda self, training: False  # type: ignore[attr-defined]
    assert isinstance(NoCancel(), TrainingBackend)


def test_a_service_without_a_backend_runs_trainings_here(tmp_path):
    service = TrainingService(tmp_path, max_log_bytes=20000)
    assert isinstance(service.backend, LocalBackend)
    assert service.backend.scheduler is None
    assert service.backend.max_log_bytes == service.max_log_bytes == 20000
    backend = LocalBackend(max_concurrent=2, timeout=30)
    assert TrainingService(tmp_path, backend=backend).backend is backend
    with pytest.raises(TypeError, match="max_concurrent"):
        TrainingService(tmp_path, max_concurrent=2)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"--train-timeout must be >= 0 \(got -1\)"):
        LocalBackend(timeout=-1)


@pytest.mark.slow
async def test_a_service_with_the_local_backend_runs_and_cancels_trainings(
        installed_models, tmp_path):
    backend = LocalBackend(max_concurrent=1, cancel_grace=1)
    service = TrainingService(tmp_path / "state", backend=backend)
    await service.start()
    try:
        assert service.backend is backend
        quick = await service.submit(
            spec("trainer"), RawArguments(pairs=[("seconds", "0")]), {"seconds": 0})
        assert quick.status == RUNNING
        assert quick.owner == service.server_id  # run by this server

        async def ended() -> Training | None:
            record = await service.get("trainer", quick.uuid)
            return record if record.finished else None

        done = await poll(ended, "the quick training to end", timeout=60)
        assert done.status == DONE and done.output["seconds"] == 0

        long = await service.submit(
            spec("trainer"), RawArguments(pairs=[("seconds", "60")]), {"seconds": 60})
        pid = (await poll(lambda: _pid(service, long.uuid), "the pid", timeout=30))
        assert pid_running(pid)
        cancelled = await service.delete("trainer", str(uuid.UUID(long.uuid)))
        assert (cancelled.status, cancelled.message) == (
            CANCELLED, "cancelled by a DELETE request")
        assert not pid_running(pid)
        log = (service.state_dir / long.job_dir / "training.log").read_text()
        assert "stopping (cancel): SIGTERM sent; SIGKILL follows after 1 s" in log
        assert "training ended: cancelled" in log
        # A finished training is forgotten, files and all.
        assert (await service.delete("trainer", quick.uuid)).status == DONE
        assert not (service.state_dir / quick.job_dir).exists()
    finally:
        await service.close()


async def _pid(service: TrainingService, training_id: str) -> int | None:
    record = service.store.get(training_id)
    return record.pid if record is not None and record.pid else None


async def test_a_slurm_training_is_answered_and_refused_by_a_local_server(tmp_path):
    # A server with the local backend on a state directory where SLURM jobs
    # run: it answers them with their job's details, and sends their
    # cancellation to a server that has the SLURM backend.
    service = TrainingService(tmp_path / "state")
    await service.start()
    try:
        (service.state_dir / "trainings" / "s").mkdir()
        service.store.insert(Training(
            uuid="5" * 32, model="trainer", status=RUNNING, args={},
            submitted_at=time.time(), job_dir="trainings/s", owner="slurm:77",
            owner_host="login", owner_pid=1,
        ))
        record = await service.get("trainer", "5" * 32)
        assert isinstance(record, SlurmTraining)
        assert record.to_json()["slurm"]["job_id"] == "77"
        [listed] = await service.list("trainer")
        assert isinstance(listed, SlurmTraining)
        with pytest.raises(TrainingBusy, match=r"is run by SLURM; cancel it on a "
                           r"server with --train-backend slurm$"):
            await service.delete("trainer", "5" * 32)
        assert (await service.get("trainer", "5" * 32)).status == RUNNING
    finally:
        await service.close()
