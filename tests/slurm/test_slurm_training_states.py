"""What each SLURM state becomes, the job script, and jobs SLURM has forgotten.

The states a one-node test cluster cannot produce (OUT_OF_MEMORY,
NODE_FAIL...) are settled here from real job directories; the last test asks
the real cluster about a job it does not know.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path

import pytest

from deepaas.training import DONE, TrainingStore
from deepaas.training.backends.slurm.backend import CANCEL_FILE, SlurmBackend, settle
from deepaas.training.backends.slurm.commands import JobInfo, SlurmSettings, job_script
from deepaas.training.backends.slurm.files import OUTPUT_FILE, STATUS_FILE
from deepaas.training.store import DATABASE_NAME, Training


def write(path: Path, value: object) -> None:
    path.write_text(json.dumps(value))


@pytest.mark.parametrize(
    ("state", "reason", "outcome", "expected_status", "expected_message"),
    [
        ("COMPLETED", "None", {"status": "done", "output": {"a": 1}}, "done", None),
        ("FAILED", "NonZeroExitCode", {"status": "error", "message": "it diverged"},
         "error", "SLURM job 7 ended FAILED, reason NonZeroExitCode: it diverged"),
        ("TIMEOUT", "TimeLimit", None, "error",
         "SLURM job 7 ended TIMEOUT, reason TimeLimit: it ran past its time limit"),
        ("OUT_OF_MEMORY", "OutOfMemory", None, "error",
         "SLURM job 7 ended OUT_OF_MEMORY, reason OutOfMemory: it used more "
         "memory than it asked for"),
        ("NODE_FAIL", "NodeDown", None, "error",
         "SLURM job 7 ended NODE_FAIL, reason NodeDown: the training left no "
         "result; the job's output ends with: slurmstepd: error: node lost"),
        ("CANCELLED", "None", None, "cancelled",
         "SLURM job 7 was cancelled outside deepaas (e.g. by scancel or an "
         "administrator)"),
    ],
)
def test_each_ended_state_becomes_a_status(
    tmp_path, state, reason, outcome, expected_status, expected_message
):
    if outcome is not None:
        write(tmp_path / "outcome.json", outcome)
    (tmp_path / OUTPUT_FILE).write_text("module loaded\nslurmstepd: error: node lost\n")
    status, output, message = settle("7", JobInfo("7", state, reason), tmp_path)
    assert (status, message) == (expected_status, expected_message)
    assert output == (outcome["output"] if expected_status == DONE else None)


def test_a_job_cancelled_by_a_delete_is_cancelled_whatever_slurm_says(tmp_path):
    write(tmp_path / CANCEL_FILE, {"at": 1})
    for state in ("FAILED", "CANCELLED"):
        assert settle("7", JobInfo("7", state), tmp_path) == (
            "cancelled", None, "cancelled by a DELETE request (SLURM job 7)"
        )
    # A training that finished before the cancel arrived is done.
    write(tmp_path / "outcome.json", {"status": "done", "output": 3})
    assert settle("7", JobInfo("7", "CANCELLED"), tmp_path)[:2] == ("done", 3)


@pytest.mark.slow
def test_the_job_script_carries_every_option(tmp_path):
    settings = SlurmSettings(
        partition="gpu", account="proj", qos="long", time="2-00:00:00", cpus=8,
        mem="32G", gpu_request="gres", sbatch_lines=("--constraint=a100",),
        setup=("module load CUDA", "source '/my venv/bin/activate'"),
        python="/my venv/bin/python",
    )
    script = job_script(settings, name="deepaas-m-1", job_dir=tmp_path,
                        output=tmp_path / "out.log", gpus=2)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    sbatch = [line.split(" ", 1)[1] for line in lines if line.startswith("#SBATCH")]
    assert sbatch == [
        "--job-name=deepaas-m-1", f"--output={tmp_path}/out.log", "--open-mode=append",
        f"--chdir={tmp_path}", "--ntasks=1", "--partition=gpu", "--account=proj",
        "--qos=long", "--time=2-00:00:00", "--mem=32G", "--cpus-per-task=8",
        "--gres=gpu:2", "--constraint=a100",
    ]
    assert lines[-3:] == [
        "module load CUDA", "source '/my venv/bin/activate'",
        f"exec '/my venv/bin/python' -m deepaas.training.slurm_job {tmp_path}",
    ]
    # SLURM reads #SBATCH lines only before the first command.
    first_command = next(i for i, line in enumerate(lines)
                         if line and not line.startswith("#"))
    assert all(not line.startswith("#SBATCH") for line in lines[first_command:])
    path = tmp_path / "job.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    plain = job_script(SlurmSettings(), name="n", job_dir=tmp_path,
                       output=tmp_path / "o", gpus=1)
    assert "#SBATCH --gpus=1" in plain and "--partition" not in plain


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("gpu_request", "cards", "--slurm-gpu-request must be 'gpus' or 'gres' "
         "(got 'cards')"),
        ("poll_interval", 0.0, "--slurm-poll-interval must be > 0 (got 0.0)"),
        ("cpus", -1, "--slurm-cpus must be >= 0 (got -1)"),
    ],
)
def test_bad_settings_say_which_option(field, value, message):
    with pytest.raises(ValueError) as caught:
        SlurmSettings(**{field: value})
    assert str(caught.value) == message


@pytest.mark.slow
@pytest.mark.slurm
async def test_jobs_slurm_has_forgotten_are_settled_from_their_files(slurm, tmp_path):
    store = TrainingStore(tmp_path / DATABASE_NAME)
    store.create()
    backend = SlurmBackend(tmp_path, store, SlurmSettings(), jobs_dir="trainings",
                           cancel_grace=1, log_level=logging.INFO)
    # Job ids far above any the test cluster has given: SLURM knows none.
    for name, job_id, age in (("finished", "4000001", 3600),
                              ("vanished", "4000002", 3600),
                              ("just-submitted", "4000003", 0)):
        job_dir = tmp_path / "trainings" / name
        job_dir.mkdir(parents=True)
        store.insert(Training(
            uuid=name, model="m", status="running", args={},
            submitted_at=time.time() - age, job_dir=f"trainings/{name}",
            owner=f"slurm:{job_id}", owner_host="h", owner_pid=1,
        ))
    finished = tmp_path / "trainings" / "finished"
    write(finished / "outcome.json", {"status": "done", "output": "weights"})
    write(finished / STATUS_FILE, {"state": "ended", "exitcode": 0, "node": "n1",
                                   "started_at": 10.0, "ended_at": 20.0})

    await backend.refresh()

    done = store.get("finished")
    assert done is not None
    assert (done.status, done.output, done.started_at, done.finished_at) == (
        "done", "weights", 10.0, 20.0)
    vanished = store.get("vanished")
    assert vanished is not None and vanished.status == "error"
    assert vanished.message == (
        "SLURM job 4000002 ended UNKNOWN, reason SLURM no longer knows the job: "
        "the training left no result"
    )
    # The state that ended each is kept: deepaas's UNKNOWN for a job no
    # command knows, the one its files report for a finished one.
    assert (vanished.scheduler_state, vanished.scheduler_reason) == (
        "UNKNOWN", "SLURM no longer knows the job")
    assert (done.scheduler_state, done.scheduler_reason) == ("COMPLETED", None)
    # SLURM may not list a job it has just accepted yet: no verdict so soon.
    pending = store.get("just-submitted")
    assert pending is not None and pending.status == "running"
    assert pending.scheduler_state is None  # nothing heard from SLURM yet


@pytest.mark.slow
@pytest.mark.slurm
async def test_a_queued_record_of_a_pending_job_becomes_running(slurm, tmp_path):
    # A store written before SLURM trainings were "running" while pending
    # has them "queued": the next look at SLURM makes them what 2.x clients
    # poll, with SLURM's state and reason beside.
    held = subprocess.run(
        ["sbatch", "--parsable", "--hold", "--output=/dev/null", "--wrap", "true"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()
    try:
        store = TrainingStore(tmp_path / DATABASE_NAME)
        store.create()
        (tmp_path / "trainings" / "old").mkdir(parents=True)
        store.insert(Training(
            uuid="old", model="m", status="queued", args={},
            submitted_at=time.time(), job_dir="trainings/old",
            owner=f"slurm:{held}", owner_host="h", owner_pid=1,
        ))
        backend = SlurmBackend(tmp_path, store, SlurmSettings(),
                               jobs_dir="trainings", cancel_grace=1,
                               log_level=logging.INFO)
        await backend.refresh()
        record = store.get("old")
        assert record is not None
        assert (record.status, record.started_at) == ("running", None)
        assert (record.scheduler_state, record.scheduler_reason) == (
            "PENDING", "JobHeldUser")
        assert store.count_by_scheduler_state() == {("m", "PENDING"): 1}
    finally:
        subprocess.run(["scancel", held], timeout=30)
