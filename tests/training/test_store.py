"""The SQLite training store: transactions, several processes, retention."""

from __future__ import annotations

import dataclasses
import multiprocessing
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepaas.training.store import (
    CANCELLED,
    DONE,
    ERROR,
    QUEUED,
    RUNNING,
    Training,
    TrainingStore,
)


def make(uuid: str, *, model: str = "m", status: str = QUEUED,
         submitted_at: float = 1_700_000_000.0, **fields) -> Training:
    return Training(uuid=uuid, model=model, status=status, args={"a": 1},
                    submitted_at=submitted_at, job_dir=f"trainings/{uuid}",
                    owner="server", owner_host="host", owner_pid=1, **fields)


@pytest.fixture
def store(tmp_path: Path) -> TrainingStore:
    store = TrainingStore(tmp_path / "state" / "trainings.sqlite")
    store.create()
    return store


def test_the_database_is_created_in_wal_mode(store):
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    store.create()  # opening an existing store again is harmless


def test_a_record_round_trips_with_its_json(store):
    training = make("a" * 32, output=None)
    store.insert(training)
    assert store.get("a" * 32) == training
    assert store.get("b" * 32) is None

    assert store.update("a" * 32, only_if=(QUEUED,), status=RUNNING, started_at=5.0)
    assert store.update("a" * 32, status=DONE, finished_at=7.5,
                        output={"loss": [0.5, 0.25]})
    done = store.get("a" * 32)
    assert done is not None
    assert (done.status, done.output, done.duration) == (DONE, {"loss": [0.5, 0.25]},
                                                         2.5)
    # A conditional update from a status it no longer has changes nothing.
    assert not store.update("a" * 32, only_if=(RUNNING,), status=ERROR)
    assert store.get("a" * 32) == done


def test_the_contract_view(store):
    training = make("c" * 32, status=DONE, started_at=1_700_000_001.0,
                    finished_at=1_700_000_003.5, output=[1, 2])
    body = training.to_json()
    assert body["uuid"] == "c" * 32
    assert body["status"] == DONE
    assert body["result"]["output"] == [1, 2]
    assert body["result"]["duration"] == "0:00:02.500000"
    assert body["result"]["finish_date"] == body["finish_date"]
    failed = make("d" * 32, status=ERROR, message="boom", finished_at=1.0)
    assert failed.to_json()["message"] == "boom"
    assert "result" not in failed.to_json()


def test_updating_an_unknown_field_is_refused(store):
    store.insert(make("a" * 32))
    with pytest.raises(ValueError, match="model"):
        store.update("a" * 32, model="other")


def test_only_finished_trainings_are_deleted(store):
    store.insert(make("a" * 32, status=RUNNING))
    store.insert(make("b" * 32, status=CANCELLED, finished_at=3.0))
    assert not store.delete("a" * 32)
    assert store.delete("b" * 32)
    assert [t.uuid for t in store.list()] == ["a" * 32]


def test_a_failed_insert_changes_nothing(store):
    store.insert(make("a" * 32))
    with pytest.raises(sqlite3.IntegrityError):
        store.insert(make("a" * 32, model="other"))
    assert [t.model for t in store.list()] == ["m"]


@pytest.mark.slow
def test_a_process_killed_mid_transaction_leaves_the_store_intact(store):
    store.insert(make("a" * 32))
    script = (
        "import os, sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "conn.execute('BEGIN IMMEDIATE')\n"
        "conn.execute(\"UPDATE trainings SET status = 'done'\")\n"
        "conn.execute(\"DELETE FROM trainings\")\n"
        "os._exit(9)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(store.path)], check=False)
    assert [t.status for t in store.list()] == [QUEUED]
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _writer(path: str, prefix: str, count: int) -> None:
    store = TrainingStore(path)
    for index in range(count):
        uuid = f"{prefix}{index:030d}"
        store.insert(make(uuid))
        store.update(uuid, only_if=(QUEUED,), status=RUNNING, started_at=1.0)
        store.update(uuid, only_if=(RUNNING,), status=DONE, finished_at=2.0,
                     output={"index": index})


@pytest.mark.slow
def test_several_processes_share_one_store(store):
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(str(store.path), f"{n:02d}", 40))
               for n in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    trainings = store.list()
    assert len(trainings) == 160
    assert {t.status for t in trainings} == {DONE}
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_retention_keeps_the_newest_per_model(store):
    for index in range(4):
        store.insert(make(f"{index:032d}", status=DONE, finished_at=100.0 + index))
    store.insert(make("r" * 32, status=RUNNING))
    store.insert(make("o" * 32, model="other", status=ERROR, finished_at=1.0))
    removed = store.prune(keep=2)
    assert sorted(t.uuid for t in removed) == [f"{i:032d}" for i in (0, 1)]
    assert [t.uuid for t in store.list("m")] == [f"{i:032d}" for i in (2, 3)] + [
        "r" * 32]
    assert [t.uuid for t in store.list("other")] == ["o" * 32]


def test_retention_by_age(store):
    now = time.time()
    store.insert(make("a" * 32, status=DONE, finished_at=now - 3 * 86400))
    store.insert(make("b" * 32, status=DONE, finished_at=now - 3600))
    store.insert(make("c" * 32, status=RUNNING, started_at=now - 9 * 86400))
    assert [t.uuid for t in store.prune(keep_days=1, now=now)] == ["a" * 32]
    assert [t.uuid for t in store.list()] == ["b" * 32, "c" * 32]
    assert store.prune() == []


def test_a_store_from_a_newer_deepaas_is_refused(store):
    with sqlite3.connect(store.path) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(RuntimeError, match="newer deepaas"):
        store.create()


def test_a_store_written_before_the_scheduler_columns_gains_them(tmp_path):
    # The table as the first deepaas with a store wrote it.
    path = tmp_path / "trainings.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE trainings (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "uuid TEXT NOT NULL UNIQUE, model TEXT NOT NULL, status TEXT NOT NULL, "
            "args TEXT NOT NULL, submitted_at REAL NOT NULL, started_at REAL, "
            "finished_at REAL, output TEXT, message TEXT, job_dir TEXT NOT NULL, "
            "owner TEXT NOT NULL, owner_host TEXT NOT NULL, "
            "owner_pid INTEGER NOT NULL, pid INTEGER)")
        conn.execute(
            "INSERT INTO trainings (uuid, model, status, args, submitted_at, "
            "job_dir, owner, owner_host, owner_pid) VALUES "
            "(?, 'm', 'queued', '{}', 1.0, 'trainings/x', 'slurm:7', 'h', 1)",
            ("a" * 32,))
        conn.execute("PRAGMA user_version=1")
    store = TrainingStore(path)
    store.create()
    old = store.get("a" * 32)
    assert old is not None
    assert (old.status, old.scheduler_state, old.scheduler_reason) == (
        QUEUED, None, None)
    assert store.update("a" * 32, status=RUNNING, scheduler_state="PENDING",
                        scheduler_reason="Priority")
    assert store.count_by_scheduler_state() == {("m", "PENDING"): 1}
    store.create()  # once added, the columns are left alone
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert store.get("a" * 32) == dataclasses.replace(
        old, status=RUNNING, scheduler_state="PENDING", scheduler_reason="Priority")
