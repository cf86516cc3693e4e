"""A real deepaas-run killed with SIGKILL and started again on its state dir."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import subprocess_env
from tests.processes import pid_running, wait_for
from tests.servers import RunningServer

TRAIN = "/v2/models/trainer/train/"


def serve(
    start_server: Callable[..., RunningServer], state: Path, site: Path
) -> tuple[RunningServer, str]:
    """Start deepaas-run; answer it and its base URL."""
    server = start_server(
        "--state-dir", str(state), "--model-name", "trainer",
        "--workers", "0", "--train-cancel-grace", "2",
        env=subprocess_env(site),
    )  # fmt: skip
    return server, server.wait_serving()


def call(method: str, url: str) -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST"
                                     else None)
    with urllib.request.urlopen(request, timeout=30) as resp:
        body = resp.read()
    return json.loads(body) if resp.headers.get_content_type() == "application/json" \
        else body.decode()


@pytest.mark.slow
def test_trainings_survive_a_killed_server(start_server, installed_models, tmp_path):
    state = tmp_path / "state"
    record = tmp_path / "record"
    record.mkdir()
    server, base = serve(start_server, state, installed_models)
    try:
        quick = call("POST", f"{base}{TRAIN}?seconds=0")
        wait_for(lambda: call("GET", f"{base}{TRAIN}{quick['uuid']}")["status"]
                 == "done", "the quick training")
        slow = call("POST", f"{base}{TRAIN}?seconds=120&child=true&record={record}")
        child = int(wait_for(lambda: (record / "child.pid").exists()
                             and (record / "child.pid").read_text(), "its child"))
        (start_file,) = record.glob("*.start")
        trainer = int(start_file.name.split(".")[0])
    finally:
        server.kill()

    # Left without its server, the training stops itself and its child.
    wait_for(lambda: not pid_running(trainer) and not pid_running(child),
             "the orphaned training to stop", timeout=20)

    server, base = serve(start_server, state, installed_models)
    try:
        listing = {t["uuid"]: t for t in call("GET", f"{base}{TRAIN}")}
        assert listing[quick["uuid"]]["status"] == "done"
        assert listing[quick["uuid"]]["result"]["output"]["seconds"] == 0
        interrupted = listing[slow["uuid"]]
        assert interrupted["status"] == "error"
        assert "interrupted by a server restart" in interrupted["message"]
        logs = call("GET", f"{base}{TRAIN}{slow['uuid']}/logs")
        assert "the server that started this training is gone" in logs
        assert "interrupted by a server restart" in logs

        again = call("POST", f"{base}{TRAIN}?seconds=0")
        wait_for(lambda: call("GET", f"{base}{TRAIN}{again['uuid']}")["status"]
                 == "done", "a training on the new server")
    finally:
        assert server.terminate(timeout=30) == 0
    assert not list((state / "servers").iterdir())
    assert os.path.exists(state / "trainings.sqlite")


@pytest.mark.slow
def test_sigterm_interrupts_the_running_trainings_of_the_local_backend(
    start_server, installed_models, tmp_path
):
    """What a pod's SIGTERM does to a training (docs/deploying.md)."""
    state = tmp_path / "state"
    record = tmp_path / "record"
    record.mkdir()
    server, base = serve(start_server, state, installed_models)
    try:
        slow = call("POST", f"{base}{TRAIN}?seconds=120&child=true&record={record}")
        child = int(wait_for(lambda: (record / "child.pid").exists()
                             and (record / "child.pid").read_text(), "its child"))
        (start_file,) = record.glob("*.start")
        trainer = int(start_file.name.split(".")[0])
    finally:
        assert server.terminate(timeout=40) == 0
    assert not pid_running(trainer) and not pid_running(child)

    server, base = serve(start_server, state, installed_models)
    try:
        stopped = call("GET", f"{base}{TRAIN}{slow['uuid']}")
        assert stopped["status"] == "error"
        assert stopped["message"].startswith("interrupted: the server shut down")
    finally:
        assert server.terminate(timeout=30) == 0
