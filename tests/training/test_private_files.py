"""The state directory, the training store, training logs and log files are private.

Run under a umask of 0, so that only modes that deepaas asks for itself
can make them private.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deepaas.api import create_app
from deepaas.engine.build import build_executors
from deepaas.log import setup_logging
from deepaas.training import TrainingService
from tests.conftest import spec

TRAIN = "/v2/models/trainer/train/"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.slow
async def test_state_directory_store_and_training_logs_are_private(
    installed_models: Any, aiohttp_client: Any, tmp_path: Path, open_umask: None
) -> None:
    state = tmp_path / "deep" / "state"
    executors = build_executors([spec("trainer")], workers=0)
    app = create_app(executors, trainings=TrainingService(state))
    client = await aiohttp_client(app)
    resp = await client.post(TRAIN, params={"seconds": "0", "talk": "true"})
    assert resp.status == 200, await resp.text()
    uuid = (await resp.json())["uuid"]
    deadline = time.monotonic() + 30
    while (await (await client.get(f"{TRAIN}{uuid}")).json())["status"] != "done":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)

    assert mode(state) == 0o700
    assert mode(state / "trainings") == 0o700
    assert mode(state / "trainings" / uuid) == 0o700
    database = state / "trainings.sqlite"
    assert mode(database) == 0o600
    wal = state / "trainings.sqlite-wal"
    if wal.exists():  # SQLite gives it the database's mode
        assert mode(wal) == 0o600
    assert mode(state / "trainings" / uuid / "training.log") == 0o600


def test_an_existing_state_directory_keeps_its_mode(
    tmp_path: Path, open_umask: None
) -> None:
    """An operator who shares a directory on purpose keeps it shared."""
    from deepaas.training.store import TrainingStore

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o750)
    TrainingStore(shared / "trainings.sqlite").create()
    assert mode(shared) == 0o750
    assert mode(shared / "trainings.sqlite") == 0o600


@pytest.mark.parametrize("watch", [False, True])
def test_log_files_are_created_private(
    tmp_path: Path, open_umask: None, watch: bool
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging(log_dir=str(tmp_path), prog="deepaas-run", watch_log_file=watch)
        logging.getLogger("deepaas.test").warning("a line")
        log = tmp_path / "deepaas-run.log"
        assert mode(log) == 0o600
        if watch:  # moved away by log rotation: the new file is private too
            log.rename(tmp_path / "deepaas-run.log.1")
            logging.getLogger("deepaas.test").warning("another line")
            assert mode(log) == 0o600
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


@pytest.mark.slow
async def test_every_file_of_the_state_directory_stays_private(
    installed_models: Any, aiohttp_client: Any, tmp_path: Path, open_umask: None
) -> None:
    """After a log cut (training.log rewritten, training.log.cut written) too."""
    state = tmp_path / "state"
    executors = build_executors([spec("printer")], workers=0)
    service = TrainingService(state, max_log_bytes=16 * 1024)
    client = await aiohttp_client(create_app(executors, trainings=service))
    resp = await client.post("/v2/models/printer/train/", params={"lines": "2000"})
    assert resp.status == 200, await resp.text()
    uuid = (await resp.json())["uuid"]
    deadline = time.monotonic() + 30
    url = f"/v2/models/printer/train/{uuid}"
    while (await (await client.get(url)).json())["status"] != "done":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert (state / "trainings" / uuid / "training.log.cut").exists()
    assert (state / "servers" / f"{service.server_id}.lock").exists()

    loose = []
    for directory, dirs, files in os.walk(state):
        for name in dirs:
            if mode(Path(directory, name)) != 0o700:
                loose.append((Path(directory, name), oct(mode(Path(directory, name)))))
        for name in files:
            if name == "checkpoint":
                continue  # the model's own file: its mode is the model's choice
            if mode(Path(directory, name)) != 0o600:
                loose.append((Path(directory, name), oct(mode(Path(directory, name)))))
    assert mode(state) == 0o700
    assert not loose, loose
