"""The jobs' table in the training store's file: an older state dir gains it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from deepaas.jobs import JobStore, PredictJob
from deepaas.training import Training, TrainingStore


def test_an_existing_training_store_gains_the_jobs_table_and_keeps_its_trainings(
    tmp_path: Path,
):
    path = tmp_path / "state" / "trainings.sqlite"
    trainings = TrainingStore(path)
    trainings.create()  # a state directory as deepaas wrote it before jobs
    training = Training.submitted(uuid="a" * 32, model="m", args={"x": 1},
                                  job_dir="trainings/a", owner="s")  # fmt: skip
    trainings.insert(training)
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "predict_jobs" not in tables

    jobs = JobStore(path)
    jobs.create()
    jobs.create()  # opening again changes nothing
    job = PredictJob.submitted(
        uuid="b" * 32, model="m", args={"y": 2}, accept=None,
        job_dir="predict-jobs/b", owner="s",
    )  # fmt: skip
    jobs.insert(job)

    assert trainings.list() == [training]
    assert jobs.list() == [job]
    assert jobs.count() == 1
    # The trainings' own schema and version are untouched.
    TrainingStore(path).create()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1


def test_only_finished_jobs_are_forgotten(tmp_path: Path):
    jobs = JobStore(tmp_path / "trainings.sqlite")
    jobs.create()
    job = PredictJob.submitted(uuid="c" * 32, model="m", args={}, accept=None,
                               job_dir="predict-jobs/c", owner="s")  # fmt: skip
    jobs.insert(job)
    assert not jobs.delete(job.uuid)
    assert jobs.update(job.uuid, only_if=("queued",), status="interrupted")
    assert not jobs.update(job.uuid, only_if=("queued",), status="done")
    assert jobs.delete(job.uuid)
    assert jobs.list() == []
