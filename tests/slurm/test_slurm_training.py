"""Trainings as SLURM jobs (--train-backend slurm) on a real one-node cluster.

One real ``deepaas-run`` serves the module; the ``slurm_gpus`` fixture
(tests/slurm/conftest.py) provides a cluster with two pretend GPUs, or the
tests skip and say why.  A training is made to wait in SLURM's queue by a
plain batch job that holds every free CPU of the node.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAKE_MODELS, subprocess_env, write_distribution
from tests.processes import pid_running, wait_for
from tests.servers import RunningServer

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TRAIN = "/v2/models/trainer/train/"
# SLURM starts and ends jobs more slowly than a local process, and each look
# at a job is a command: wait longer and look less often.
SLURM_WAIT = {"timeout": 60.0, "interval": 0.1}
GPU_TRAIN = "/v2/models/slurm-gpu-trainer/train/"
SERVER_OPTIONS = (
    "--train-backend", "slurm", "--slurm-poll-interval", "0.2",
    "--slurm-time", "1", "--train-cancel-grace", "2", "--workers", "0",
    "--model-name", "trainer", "--model-name", "slurm-gpu-trainer",
    "--model-name", "slurm-greedy-trainer",
)


class Server:
    """A deepaas-run with the SLURM backend that a test may kill and restart."""

    def __init__(self, state: Path, site: Path, folder: Path) -> None:
        self.state, self.site, self.folder = state, site, folder
        self.running: RunningServer | None = None
        self.url = ""
        self.starts = 0
        self.job_ids: set[str] = set()

    def start(self) -> None:
        self.starts += 1
        self.running = RunningServer(
            "--state-dir", str(self.state), *SERVER_OPTIONS,
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
            except subprocess.TimeoutExpired:
                pass  # killed by close()
            finally:
                self.running.close()

    def call(self, method: str, path: str, query: str = "") -> Any:
        request = urllib.request.Request(
            self.url + path + (f"?{query}" if query else ""), method=method,
            data=b"" if method == "POST" else None,
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as resp:
                body = resp.read()
        except urllib.error.HTTPError:
            raise
        except urllib.error.URLError as exc:
            assert self.running is not None
            log = self.running.stderr()
            raise AssertionError(
                f"{method} {path}: {exc}; deepaas-run exit status "
                f"{self.running.process.poll()}, its log ends:\n{log[-3000:]}"
            ) from exc
        if resp.headers.get_content_type() != "application/json":
            return body.decode()
        value = json.loads(body)
        if isinstance(value, dict) and "slurm" in value:
            self.job_ids.add(value["slurm"]["job_id"])
        return value

    def train(self, query: str, path: str = TRAIN) -> dict[str, Any]:
        training: dict[str, Any] = self.call("POST", path, query)
        return training

    def get(self, training: dict[str, Any], path: str = TRAIN) -> dict[str, Any]:
        value: dict[str, Any] = self.call("GET", path + training["uuid"])
        return value

    def wait_status(self, training: dict[str, Any], *statuses: str,
                    path: str = TRAIN, timeout: float = 60) -> dict[str, Any]:
        return wait_for(lambda: (t := self.get(training, path))["status"] in statuses
                        and t, f"status {statuses} of {training['uuid']}", timeout,
                        interval=SLURM_WAIT["interval"])

    def wait_started(self, training: dict[str, Any], path: str = TRAIN
                     ) -> dict[str, Any]:
        """The training once SLURM runs its job (its status is running before)."""
        return wait_for(
            lambda: (t := self.get(training, path))["slurm"]["state"] != "PENDING"
            and t, f"the job of {training['uuid']} to start", **SLURM_WAIT)


def slurm_state(job_id: str) -> dict[str, str]:
    shown = subprocess.run(["scontrol", "show", "job", "-d", "-o", job_id],
                           capture_output=True, text=True, timeout=30)
    return dict(item.split("=", 1) for item in shown.stdout.split() if "=" in item)


def free_cpus() -> int:
    shown = subprocess.run(["scontrol", "show", "node", "-o"], capture_output=True,
                           text=True, timeout=30).stdout
    total = int(re.search(r"CPUTot=(\d+)", shown).group(1))  # type: ignore[union-attr]
    used = int(re.search(r"CPUAlloc=(\d+)", shown).group(1))  # type: ignore[union-attr]
    return total - used


@pytest.fixture
def blocker() -> Iterator[str]:
    """A batch job holding every free CPU, so that the next job has to wait."""
    job_id = subprocess.run(
        ["sbatch", "--parsable", f"--cpus-per-task={free_cpus()}", "--output=/dev/null",
         "--wrap", "sleep 120"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()
    try:
        wait_for(lambda: slurm_state(job_id).get("JobState") == "RUNNING",
                 "the blocking job to run", **SLURM_WAIT)
        yield job_id
    finally:
        subprocess.run(["scancel", job_id], timeout=30)


@pytest.fixture(scope="module")
def server(slurm_gpus: int, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("slurm-trainings")
    site = write_distribution(folder / "site", FAKE_MODELS)
    # The job directories must be on a filesystem the node shares: here,
    # the node is this machine.
    running = Server(folder / "state", site, folder)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        if running.job_ids:
            subprocess.run(["scancel", *running.job_ids], timeout=30)


def metric(server: Server, name: str, **labels: str) -> float:
    """One sample of the server's /metrics."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in server.call("GET", "/metrics").splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{{{wanted}}}")


def test_a_pending_training_is_running_with_slurms_state_beside(server, blocker):
    # DEEPaaS 2.x clients poll while the status is "running": a job waiting
    # in SLURM's queue is running to them, and PENDING in "slurm".
    training = server.train("seconds=1&talk=true")
    job_id = training["slurm"]["job_id"]
    assert training["status"] == "running"
    assert training["slurm"] == {"job_id": job_id, "node": None,
                                 "state": "PENDING", "reason": None}
    assert "start_date" not in training
    assert slurm_state(job_id)["JobState"] == "PENDING"
    # SLURM says why once it has tried to schedule the job.
    waiting = wait_for(lambda: (t := server.get(training))["slurm"]["reason"] and t,
                       "SLURM's reason", **SLURM_WAIT)
    assert waiting["status"] == "running" and "start_date" not in waiting
    assert waiting["slurm"]["state"] == "PENDING"
    assert waiting["slurm"]["reason"] == slurm_state(job_id)["Reason"]
    listed = server.call("GET", TRAIN)
    mine = next(t for t in listed if t["uuid"] == training["uuid"])
    assert (mine["status"], mine["slurm"]["state"]) == ("running", "PENDING")
    # /metrics counts it as running, and as PENDING among SLURM's jobs.
    pending = [t for t in listed if t["slurm"]["state"] == "PENDING"]
    assert metric(server, "deepaas_slurm_trainings", model="trainer",
                  state="PENDING") == len(pending)
    assert metric(server, "deepaas_trainings", model="trainer",
                  status="running") >= len(pending)
    assert metric(server, "deepaas_trainings", model="trainer",
                  status="queued") == 0

    subprocess.run(["scancel", blocker], check=True, timeout=30)
    started = server.wait_started(training)
    assert started["status"] == "running"
    assert (started["slurm"]["state"], started["slurm"]["reason"]) == (
        "RUNNING", None)
    assert "start_date" in started
    # The node shows once the job has started on it.
    done = server.wait_status(training, "done")
    assert done["result"]["output"]["seconds"] == 1.0
    assert done["slurm"] == {"job_id": job_id, "node": os.uname().nodename,
                             "state": "COMPLETED", "reason": None}
    assert done["start_date"] <= done["finish_date"]

    log = server.call("GET", TRAIN + training["uuid"] + "/logs")
    assert f"submitted to SLURM as job {job_id}" in log
    assert "to stdout from print" in log and "from a child process" in log
    assert log.rstrip().endswith("training ended: done")
    tail = server.call("GET", TRAIN + training["uuid"] + "/logs", "tail=1")
    assert tail.strip().endswith("training ended: done")
    assert "--gpus" not in (server.state / "trainings" / training["uuid"]
                            / "slurm-job.sh").read_text()


def test_the_start_up_log_says_slurm_decides_how_many_run(server):
    log = (server.folder / "server-1.log").read_text()
    (line,) = [line for line in log.splitlines() if "trainings: state in" in line]
    assert line.endswith("run as SLURM jobs, as many at once as SLURM's queue allows")
    assert "limit" not in line


def test_a_failing_training_is_an_error_naming_the_job(server):
    training = server.train("fail=true")
    failed = server.wait_status(training, "error")
    job_id = training["slurm"]["job_id"]
    assert failed["message"].startswith(f"SLURM job {job_id} ended FAILED")
    assert "NonZeroExitCode" in failed["message"]
    assert "the training diverged" in failed["message"]
    assert slurm_state(job_id)["JobState"] == "FAILED"


def test_cancel_while_pending_never_runs_it(server, blocker, tmp_path):
    training = server.train(f"seconds=1&record={tmp_path}")
    pending = server.get(training)
    assert (pending["status"], pending["slurm"]["state"]) == ("running", "PENDING")
    cancelled = server.call("DELETE", TRAIN + training["uuid"])
    assert cancelled["status"] == "cancelled"
    assert "cancelled by a DELETE request" in cancelled["message"]
    assert cancelled["slurm"]["state"] == "CANCELLED"
    assert server.get(training) == cancelled
    assert slurm_state(training["slurm"]["job_id"])["JobState"] == "CANCELLED"
    assert list(tmp_path.iterdir()) == []  # train() never started


def test_cancel_while_running_stops_every_process_of_the_job(server, tmp_path):
    training = server.train(f"seconds=120&child=true&record={tmp_path}")
    server.wait_started(training)
    child = wait_for(lambda: (tmp_path / "child.pid").exists()
                     and int((tmp_path / "child.pid").read_text()), "the child",
                     **SLURM_WAIT)
    trainer = int(next(tmp_path.glob("*.start")).stem)
    assert pid_running(child) and pid_running(trainer)

    cancelled = server.call("DELETE", TRAIN + training["uuid"])
    assert cancelled["status"] == "cancelled"
    state = slurm_state(training["slurm"]["job_id"])["JobState"]
    assert state not in ("RUNNING", "COMPLETING", "PENDING")
    wait_for(lambda: not pid_running(child) and not pid_running(trainer),
             "the job's processes to be gone", timeout=10)
    log = server.call("GET", TRAIN + training["uuid"] + "/logs")
    assert "stopping (cancel): SIGTERM sent" in log


def test_scancel_outside_deepaas_is_cancelled(server):
    training = server.train("seconds=120")
    server.wait_started(training)
    subprocess.run(["scancel", training["slurm"]["job_id"]], check=True, timeout=30)
    cancelled = server.wait_status(training, "cancelled")
    assert "cancelled outside deepaas" in cancelled["message"]


def test_a_refused_job_answers_with_slurms_message(server):
    with pytest.raises(urllib.error.HTTPError) as caught:
        server.train("", path="/v2/models/slurm-greedy-trainer/train/")
    assert caught.value.code == 400
    body = json.loads(caught.value.read())
    assert "SLURM refused the training's job" in body["message"]
    assert "Requested node configuration is not available" in body["message"]
    assert server.call("GET", "/v2/models/slurm-greedy-trainer/train/") == []


def test_gpu_trainings_ask_for_their_gpus_and_wait_for_them(server, slurm_gpus):
    first = server.train("seconds=3", path=GPU_TRAIN)
    server.wait_started(first, path=GPU_TRAIN)
    second = server.train("seconds=0", path=GPU_TRAIN)
    first_job, second_job = first["slurm"]["job_id"], second["slurm"]["job_id"]
    assert f"gpu:{slurm_gpus}" in slurm_state(first_job)["JOB_GRES"]
    assert "IDX:0-1" in slurm_state(first_job).get("GRES", "")
    time.sleep(1.5)  # slurmctld has scheduled at least once meanwhile
    waiting = slurm_state(second_job)
    assert (waiting["JobState"], waiting["Reason"]) == ("PENDING", "Resources")
    answered = server.get(second, GPU_TRAIN)
    assert answered["status"] == "running"
    assert (answered["slurm"]["state"], answered["slurm"]["reason"]) == (
        "PENDING", "Resources")

    done = server.wait_status(first, "done", path=GPU_TRAIN)
    assert done["result"]["output"]["slurm_job_id"] == first_job
    second_done = server.wait_status(second, "done", path=GPU_TRAIN)
    assert second_done["result"]["output"]["slurm_job_id"] == second_job
    assert second_done["start_date"] >= done["finish_date"][:19]


def test_trainings_outlive_a_killed_server(server, tmp_path):
    short = server.train("seconds=1")
    long = server.train("seconds=8")
    server.wait_started(short)
    assert server.wait_started(long)["slurm"]["state"] == "RUNNING"
    server.kill()
    short_job = short["slurm"]["job_id"]
    # The short one ends while no server watches.
    wait_for(lambda: slurm_state(short_job).get("JobState") == "COMPLETED",
             "the short job to complete", **SLURM_WAIT)
    assert slurm_state(long["slurm"]["job_id"])["JobState"] == "RUNNING"

    server.start()
    assert server.get(short)["status"] == "done"
    assert server.get(short)["slurm"]["state"] == "COMPLETED"
    assert server.get(long)["status"] == "running"
    assert server.get(long)["slurm"]["state"] == "RUNNING"
    finished = server.wait_status(long, "done")
    assert finished["result"]["output"]["seconds"] == 8.0
    assert "interrupted" not in server.call("GET", TRAIN + long["uuid"] + "/logs")


def test_a_pending_training_outlives_a_killed_server(server, blocker):
    training = server.train("seconds=1")
    assert server.get(training)["slurm"]["state"] == "PENDING"
    server.kill()
    server.start()
    # Picked up before the new server answers: still waiting, still running.
    again = server.get(training)
    assert (again["status"], again["slurm"]["state"]) == ("running", "PENDING")
    subprocess.run(["scancel", blocker], check=True, timeout=30)
    done = server.wait_status(training, "done")
    assert done["slurm"]["state"] == "COMPLETED"
    assert done["result"]["output"]["seconds"] == 1.0


@pytest.mark.slow
def test_a_training_past_its_time_limit_is_an_error(server):
    # The server gives every job --slurm-time 1 (one minute, SLURM's unit).
    training = server.train("seconds=300")
    failed = server.wait_status(training, "error", timeout=150)
    job_id = training["slurm"]["job_id"]
    assert failed["message"].startswith(f"SLURM job {job_id} ended TIMEOUT")
    assert "TimeLimit" in failed["message"] and "time limit" in failed["message"]
    assert slurm_state(job_id)["JobState"] == "TIMEOUT"


def _bad_start(tmp_path: Path, site: Path, *options: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "deepaas.cmd.run", "--listen-port", "0",
         "--state-dir", str(tmp_path / "state"), "--workers", "0",
         "--model-name", "trainer", "--train-backend", "slurm", *options],
        env=subprocess_env(site, **env), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0
    return done.stderr.strip().splitlines()[-1]


def test_bad_configuration_stops_deepaas_run_with_one_line(slurm, tmp_path):
    site = write_distribution(tmp_path / "site", FAKE_MODELS)
    line = _bad_start(tmp_path, site, "--slurm-partition", "nope")
    assert line == ("deepaas-run: error: --slurm-partition: SLURM has no partition "
                    "'nope' (see `sinfo`)")

    line = _bad_start(tmp_path, site, PATH=str(Path(sys.executable).parent))
    assert line.startswith("deepaas-run: error: --train-backend slurm: sbatch, "
                           "squeue, scontrol, scancel not found on PATH")

    # The cluster's own configuration, but a port where no controller listens.
    real = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
    conf = tmp_path / "slurm.conf"
    conf.write_text(re.sub(r"(?m)^SlurmctldPort=.*$", "", real.read_text())
                    + "SlurmctldPort=1\n")
    line = _bad_start(tmp_path, site, SLURM_CONF=str(conf))
    assert line.startswith("deepaas-run: error: --train-backend slurm: the SLURM "
                           "controller does not answer (`scontrol ping`: ")
    assert "DOWN" in line


def test_uploaded_files_reach_the_job_through_the_job_directory(server):
    boundary = "deepaas-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; "
            f"filename=\"weights.txt\"\r\nContent-Type: text/plain\r\n\r\n"
            f"shared bytes\r\n--{boundary}--\r\n").encode()
    request = urllib.request.Request(
        server.url + TRAIN, data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        training = json.loads(resp.read())
    job_dir = server.state / "trainings" / training["uuid"]
    server.job_ids.add(training["slurm"]["job_id"])
    done = server.wait_status(training, "done")
    data = done["result"]["output"]["data"]
    assert data["content"] == "shared bytes"
    assert data["original_filename"] == "weights.txt"
    assert Path(data["path"]).parent == job_dir / "uploads"
    assert not (job_dir / "uploads").exists()  # removed once it ended
