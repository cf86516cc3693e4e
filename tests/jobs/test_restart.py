"""Prediction jobs across a real deepaas-run killed (or stopped) and restarted."""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import subprocess_env
from tests.processes import pid_running, wait_for
from tests.servers import RunningServer

JOBS = "/v2/models/slow/predict/jobs/"
PREDICT = "/v2/models/slow/predict/"


def serve(
    start_server: Callable[..., RunningServer], state: Path, site: Path
) -> tuple[RunningServer, str]:
    """Start deepaas-run over the slow model; answer it and its URL."""
    server = start_server(
        "--state-dir", str(state), "--model-name", "slow", "--workers", "1",
        "--max-concurrent-predict-jobs", "1",
        env=subprocess_env(site),
    )  # fmt: skip
    return server, server.wait_serving()


def call(method: str, url: str, headers: dict[str, str] | None = None) -> Any:
    data = b"" if method == "POST" else None
    request = urllib.request.Request(url, method=method, data=data,
                                     headers=headers or {})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as resp:
        body = resp.read()
    return json.loads(body) if resp.headers.get_content_type() == "application/json" \
        else body  # fmt: skip


def submit(base: str, query: str) -> dict[str, Any]:
    job: dict[str, Any] = call("POST", f"{base}{PREDICT}?{query}",
                               {"Prefer": "respond-async"})  # fmt: skip
    assert job["status"] in ("queued", "running"), job
    return job


def status(base: str, job: dict[str, Any]) -> str:
    return str(call("GET", f"{base}{JOBS}{job['uuid']}")["status"])


@pytest.fixture
def marks(tmp_path: Path) -> Iterator[Path]:
    """Where the model leaves ``<pid>.start``; calls still running are ended."""
    folder = tmp_path / "marks"
    folder.mkdir()
    yield folder
    for mark in folder.glob("*.start"):
        pid = int(mark.name.split(".")[0])
        if pid_running(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_killed_server_leaves_its_results_and_its_unfinished_jobs_interrupted(
    start_server, installed_models, tmp_path, marks
):
    state = tmp_path / "state"
    server, base = serve(start_server, state, installed_models)
    try:
        done = submit(base, "seconds=0")
        wait_for(lambda: status(base, done) == "done", "the quick job")
        running = submit(base, f"seconds=30&record={marks}")
        queued = submit(base, "seconds=30")
        wait_for(lambda: any(marks.glob("*.start")), "the long job to start")
        assert status(base, running) == "running"
        assert status(base, queued) == "queued"
    finally:
        server.kill()

    server, base = serve(start_server, state, installed_models)
    try:
        listing = {job["uuid"]: job for job in call("GET", f"{base}{JOBS}")}
        assert listing[done["uuid"]]["status"] == "done"
        answer = call("GET", f"{base}{JOBS}{done['uuid']}/result")
        assert answer["predictions"]["seconds"] == 0
        for job in (running, queued):
            settled = listing[job["uuid"]]
            assert settled["status"] == "interrupted", settled
            assert "stopped before it finished" in settled["message"]
            with pytest.raises(urllib.error.HTTPError) as refused:
                call("GET", f"{base}{JOBS}{job['uuid']}/result")
            assert refused.value.code == 409
        # Interrupted jobs are never run again: their model is free.
        again = submit(base, "seconds=0")
        wait_for(lambda: status(base, again) == "done", "a job on the new server")
    finally:
        assert server.terminate(timeout=30) == 0
    # The killed server's locks went with it; the stopped one released its own.
    assert not list((state / "servers").iterdir())


@pytest.mark.slow
def test_a_stopped_server_interrupts_its_jobs_on_its_way_out(
    start_server, installed_models, tmp_path, marks
):
    state = tmp_path / "state"
    server, base = serve(start_server, state, installed_models)
    try:
        running = submit(base, f"seconds=30&record={marks}")
        wait_for(lambda: any(marks.glob("*.start")), "the job to start")
    finally:
        assert server.terminate(timeout=40) == 0

    server, base = serve(start_server, state, installed_models)
    try:
        stopped = call("GET", f"{base}{JOBS}{running['uuid']}")
        assert stopped["status"] == "interrupted", stopped
        assert stopped["message"] == (
            "interrupted: the server shut down before this job finished"
        )
        assert "finish_date" in stopped
    finally:
        assert server.terminate(timeout=30) == 0
