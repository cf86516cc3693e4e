"""Prediction jobs as SLURM jobs (--train-backend slurm) on a real one-node cluster.

A real ``deepaas-run`` is killed with SIGKILL while SLURM runs a job of
its; the next one started on the same state directory collects the job's
result and serves it.  The ``slurm`` fixture (tests/slurm/conftest.py)
provides the cluster, or the tests skip and say why.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAKE_MODELS, subprocess_env, write_distribution
from tests.fake_models.jobs import PNG
from tests.processes import wait_for
from tests.servers import RunningServer

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PREDICT = "/v2/models/slow/predict/"
JOBS = "/v2/models/slow/predict/jobs/"
SLURM_WAIT = {"timeout": 90.0, "interval": 0.2}


class Server:
    """A deepaas-run with the SLURM backend that a test kills and restarts."""

    def __init__(self, state: Path, site: Path, folder: Path) -> None:
        self.state, self.site, self.folder = state, site, folder
        self.running: RunningServer | None = None
        self.url = ""
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.running = RunningServer(
            "--state-dir", str(self.state), "--model-name", "slow",
            "--workers", "0", "--train-backend", "slurm",
            "--slurm-poll-interval", "0.2", "--slurm-time", "2",
            env=subprocess_env(self.site),
            log=self.folder / f"server-{self.starts}.log",
        )  # fmt: skip
        try:
            self.url = self.running.wait_serving()
        except BaseException:
            self.running.close()
            raise

    def kill(self) -> None:
        assert self.running is not None
        self.running.kill()
        self.running.close()

    def stop(self) -> None:
        if self.running is not None:
            try:
                if self.running.process.poll() is None:
                    self.running.terminate()
            finally:
                self.running.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, bytes]:
        request = urllib.request.Request(self.url + path, method=method, data=data,
                                         headers=headers or {})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                return resp.status, resp.headers["Content-Type"], resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["Content-Type"], exc.read()

    def job(self, job: dict[str, Any]) -> dict[str, Any]:
        status, _, body = self.request("GET", JOBS + job["uuid"])
        assert status == 200, body
        value: dict[str, Any] = json.loads(body)
        return value

    def wait_status(self, job: dict[str, Any], *statuses: str) -> dict[str, Any]:
        return wait_for(
            lambda: (j := self.job(job))["status"] in statuses and j,
            f"job {job['uuid']} to be {statuses}",
            **SLURM_WAIT,
        )


def free_cpus() -> int:
    shown = subprocess.run(["scontrol", "show", "node", "-o"], capture_output=True,
                           text=True, timeout=30).stdout  # fmt: skip
    total = int(re.search(r"CPUTot=(\d+)", shown).group(1))  # type: ignore[union-attr]
    used = int(re.search(r"CPUAlloc=(\d+)", shown).group(1))  # type: ignore[union-attr]
    return total - used


def squeue_state(job_id: str) -> str:
    shown = subprocess.run(
        ["squeue", "-h", "-o", "%T", "-j", job_id],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return shown.stdout


@pytest.fixture
def blocker() -> Iterator[str]:
    """A batch job holding every free CPU, so that the next job has to wait."""
    job_id = subprocess.run(
        ["sbatch", "--parsable", f"--cpus-per-task={free_cpus()}",
         "--output=/dev/null", "--wrap", "sleep 120"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    try:
        wait_for(lambda: "RUNNING" in squeue_state(job_id),
                 "the blocking job to run", **SLURM_WAIT)  # fmt: skip
        yield job_id
    finally:
        subprocess.run(["scancel", job_id], timeout=30)


def multipart(fields: dict[str, str], files: dict[str, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body, as a browser sends it."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
                     f"\r\n\r\n{value}\r\n".encode())  # fmt: skip
    for name, content in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{name}.bin"\r\nContent-Type: application/octet-stream'
            "\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def server(slurm: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("slurm-jobs")
    site = write_distribution(folder / "site", FAKE_MODELS)
    # The job directories must be on a filesystem the node shares: here,
    # the node is this machine.
    running = Server(folder / "state", site, folder)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def submit(
    server: Server,
    fields: dict[str, str],
    files: dict[str, bytes],
    accept: str = "application/json",
) -> dict[str, Any]:
    body, content_type = multipart(fields, files)
    status, _, answer = server.request(
        "POST", PREDICT, data=body,
        headers={"Content-Type": content_type, "Prefer": "respond-async",
                 "Accept": accept},
    )  # fmt: skip
    assert status == 202, answer
    job: dict[str, Any] = json.loads(answer)
    assert job["slurm"]["job_id"]
    return job


def test_a_job_outlives_a_killed_server_whose_successor_serves_its_result(server):
    job = submit(server, {"seconds": "6"}, {"data": b"pixels"}, accept="image/png")
    job_dir = server.state / "predict-jobs" / job["uuid"]
    running = server.wait_status(job, "running")
    assert running["slurm"]["state"] == "RUNNING"
    server.kill()
    # The job goes on without a server, and ends.
    wait_for(lambda: (job_dir / "result").exists(), "the job's result",
             **SLURM_WAIT)  # fmt: skip

    server.start()
    done = server.wait_status(job, "done", "error")
    assert done["status"] == "done", done
    assert done["slurm"]["state"] == "COMPLETED"
    status, content_type, body = server.request("GET", JOBS + job["uuid"] + "/result")
    assert status == 200
    assert content_type == "image/png"
    assert body == PNG + b"pixels"
    # The upload went with the job's end; the result and its record stay.
    assert not (job_dir / "uploads").exists()
    status, _, record = server.request("GET", JOBS + job["uuid"] + "/provenance")
    assert status == 200
    assert json.loads(record)["activity"]
    # Forgotten, the job leaves nothing behind.
    assert server.request("DELETE", JOBS + job["uuid"])[0] == 200
    assert not job_dir.exists()


def test_a_running_slurm_job_is_cancelled(server):
    job = submit(server, {"seconds": "60"}, {})
    server.wait_status(job, "running")
    status, _, body = server.request("DELETE", JOBS + job["uuid"])
    cancelled = json.loads(body)
    assert status == 200, cancelled
    assert cancelled["status"] == "cancelled", cancelled
    assert "DELETE" in cancelled["message"]
    status, _, _ = server.request("GET", JOBS + job["uuid"] + "/result")
    assert status == 409


def test_a_job_waiting_in_slurms_queue_is_queued_and_cancelled_unrun(server, blocker):
    job = submit(server, {"seconds": "0"}, {"data": b"x"})
    job_dir = server.state / "predict-jobs" / job["uuid"]
    waiting = server.job(job)
    assert waiting["status"] == "queued"
    assert waiting["slurm"]["state"] == "PENDING"
    status, _, body = server.request("DELETE", JOBS + job["uuid"])
    cancelled = json.loads(body)
    assert status == 200, cancelled
    assert cancelled["status"] == "cancelled"
    assert "start_date" not in cancelled  # it never ran
    assert cancelled["slurm"]["state"] == "CANCELLED"
    assert not (job_dir / "result").exists()
    assert not (job_dir / "uploads").exists()
