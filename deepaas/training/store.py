"""TrainingStore: the durable record of every training, in one SQLite file.

The store lives in the state directory as ``trainings.sqlite``.  It is
opened in WAL mode with a busy timeout, and every change is one short
``BEGIN IMMEDIATE`` transaction, so a crash mid-write leaves the previous
state intact and several ``deepaas-run`` processes may share one state
directory.  A connection is opened per operation: SQLite makes that cheap,
and it keeps the store safe to use from any thread or process.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from deepaas.training.errors import InvalidTrainingRequest
from deepaas.training.record_table import RecordTable

#: Seconds a request waits for the store (its SQLite busy timeout, and its
#: place in the store's thread) before it is answered 503 with Retry-After.
STORE_WAIT = 3.0

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
ERROR = "error"
CANCELLED = "cancelled"

UNFINISHED = (QUEUED, RUNNING)
#: The messages of trainings ended by a DELETE, and by the server stopping.
CANCELLED_MESSAGE = "cancelled by a DELETE request"
INTERRUPTED_BY_SHUTDOWN = (
    "interrupted: the server shut down before this training finished"
)
FINISHED = (DONE, ERROR, CANCELLED)

DATABASE_NAME = "trainings.sqlite"

#: Modes of what deepaas creates in its state directory: the owner's only.
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
SCHEMA_VERSION = 1

#: How DEEPaaS wrote dates (``str(datetime.now())``), kept for its clients.
DATE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trainings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    args TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    output TEXT,
    message TEXT,
    job_dir TEXT NOT NULL,
    owner TEXT NOT NULL,
    owner_host TEXT NOT NULL,
    owner_pid INTEGER NOT NULL,
    pid INTEGER,
    scheduler_state TEXT,
    scheduler_reason TEXT
);
CREATE INDEX IF NOT EXISTS trainings_by_model ON trainings (model, seq);
CREATE INDEX IF NOT EXISTS trainings_by_status ON trainings (status);
"""

# SQL text is built only from these column names and from '?' placeholders
# (marked noqa: S608 where it is joined); every value is a bound parameter.
_COLUMNS = (
    "uuid",
    "model",
    "status",
    "args",
    "submitted_at",
    "started_at",
    "finished_at",
    "output",
    "message",
    "job_dir",
    "owner",
    "owner_host",
    "owner_pid",
    "pid",
    "scheduler_state",
    "scheduler_reason",
)
_UPDATABLE = {
    "status",
    "started_at",
    "finished_at",
    "output",
    "message",
    "pid",
    "scheduler_state",
    "scheduler_reason",
}
#: Columns added after schema 1 was first written, with their types.  An
#: added column does not change ``SCHEMA_VERSION``: older deepaas names the
#: columns it reads and writes, so it keeps working beside a newer one.
_ADDED_COLUMNS = (("scheduler_state", "TEXT"), ("scheduler_reason", "TEXT"))


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) if needed; a new one is 0700.

    An existing directory keeps its mode: an operator may have chosen to
    share it.
    """
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)


def write_private(path: Path, data: bytes, *, sync: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically; the file is 0600 whatever the umask.

    Readers see the old file or the whole new one.  ``sync`` makes the data
    durable before the rename (an outcome that must survive a crash).
    """
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # a partial file left by a crash
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, path)


def format_date(timestamp: float) -> str:
    """A local date as DEEPaaS clients parse it: ``2024-05-01 12:00:00.000000``."""
    return datetime.datetime.fromtimestamp(timestamp).strftime(DATE_FORMAT)


def parse_uuid(value: str) -> str:
    """A training uuid in its canonical form (32 hex digits), or a 400."""
    try:
        return uuid.UUID(value.strip()).hex
    except ValueError:
        raise InvalidTrainingRequest(
            f"{value!r} is not a training uuid: expected 32 hexadecimal digits, "
            "as answered by POST .../train/"
        ) from None


@dataclasses.dataclass
class Training:
    """One training as recorded in the store.

    ``job_dir`` is relative to the state directory (so that the directory
    may move); it holds the training's log, its copied uploads and its
    outcome.  ``owner`` identifies the server that runs (or ran) it.
    ``scheduler_state`` and ``scheduler_reason`` are what a batch scheduler
    (SLURM) last said of the training's job, None for a local training.
    """

    uuid: str
    model: str
    status: str
    args: dict[str, Any]
    submitted_at: float
    job_dir: str
    owner: str
    owner_host: str
    owner_pid: int
    started_at: float | None = None
    finished_at: float | None = None
    output: Any = None
    message: str | None = None
    pid: int | None = None
    scheduler_state: str | None = None
    scheduler_reason: str | None = None

    @classmethod
    def submitted(
        cls, *, uuid: str, model: str, args: dict[str, Any], job_dir: str, owner: str
    ) -> Training:
        """A training ``owner`` (this process) has just accepted: queued, now.

        Local and SLURM trainings are recorded alike; only the owner differs.
        """
        return cls(
            uuid=uuid,
            model=model,
            status=QUEUED,
            args=args,
            submitted_at=time.time(),
            job_dir=job_dir,
            owner=owner,
            owner_host=os.uname().nodename,
            owner_pid=os.getpid(),
        )

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def duration(self) -> float | None:
        """Seconds it ran (queue time excluded), once finished."""
        if self.finished_at is None:
            return None
        return max(0.0, self.finished_at - (self.started_at or self.finished_at))

    def to_json(self) -> dict[str, Any]:
        """The contract's view: uuid, date, args, status, message, result."""
        body: dict[str, Any] = {
            "uuid": self.uuid,
            "date": format_date(self.submitted_at),
            "args": self.args,
            "status": self.status,
            "model": self.model,
        }
        if self.started_at is not None:
            body["start_date"] = format_date(self.started_at)
        if self.message is not None and self.status in (ERROR, CANCELLED):
            body["message"] = self.message
        if self.finished_at is not None:
            finish_date = format_date(self.finished_at)
            body["finish_date"] = finish_date
            if self.status == DONE:
                body["result"] = {
                    "output": self.output,
                    "finish_date": finish_date,
                    "duration": str(datetime.timedelta(seconds=self.duration or 0.0)),
                }
        return body

    def _row(self) -> tuple[Any, ...]:
        values = dataclasses.asdict(self)
        values["args"] = json.dumps(self.args)
        values["output"] = None if self.output is None else json.dumps(self.output)
        return tuple(values[column] for column in _COLUMNS)


def _from_row(row: sqlite3.Row) -> Training:
    values = {column: row[column] for column in _COLUMNS}
    values["args"] = json.loads(values["args"])
    if values["output"] is not None:
        values["output"] = json.loads(values["output"])
    return Training(**values)


class TrainingStore(RecordTable[Training]):
    """Reads and writes training records in ``<state_dir>/trainings.sqlite``."""

    table = "trainings"
    columns = _COLUMNS
    updatable = frozenset(_UPDATABLE)
    finished = FINISHED
    unfinished_statuses = UNFINISHED
    what = "training"

    def create(self) -> None:
        """Create the database (and its folder) if needed; check its version.

        Both are private to the user running the server (0700 and 0600):
        the records hold every training's arguments and results.  SQLite
        gives its -wal and -shm files the database's own mode.
        """
        make_private_dir(self.path.parent)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE))
        with self._connect() as conn:
            # WAL lets readers go on while one process writes, and survives a
            # crash mid-write; the setting is stored in the file itself.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise RuntimeError(
                        f"the training store {str(self.path)!r} was written by a "
                        f"newer deepaas (schema {version}); upgrade deepaas or "
                        "use another --state-dir"
                    )
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                present = {
                    row[1] for row in conn.execute("PRAGMA table_info(trainings)")
                }
                for column, kind in _ADDED_COLUMNS:
                    if column not in present:
                        conn.execute(
                            f"ALTER TABLE trainings ADD COLUMN {column} {kind}"
                        )
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _from_row(self, row: sqlite3.Row) -> Training:
        return _from_row(row)

    def _stored(self, changes: dict[str, Any]) -> dict[str, Any]:
        if changes.get("output") is not None:
            changes["output"] = json.dumps(changes["output"])
        return changes

    def count_by_status(self) -> dict[tuple[str, str], int]:
        """How many trainings each (model, status) has, for ``/metrics``."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT model, status, COUNT(*) FROM trainings GROUP BY model, status"
            ).fetchall()
        return {(row[0], row[1]): int(row[2]) for row in rows}

    def count_by_scheduler_state(self) -> dict[tuple[str, str], int]:
        """Unfinished trainings per (model, scheduler state), for ``/metrics``.

        A SLURM job waiting in the queue is ``running`` to DEEPaaS clients;
        this count tells an operator how many of them the scheduler holds.
        """
        marks = ", ".join("?" for _ in UNFINISHED)
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT model, scheduler_state, COUNT(*) FROM trainings "  # noqa: S608
                f"WHERE status IN ({marks}) AND scheduler_state IS NOT NULL "
                "GROUP BY model, scheduler_state",
                UNFINISHED,
            ).fetchall()
        return {(row[0], row[1]): int(row[2]) for row in rows}


__all__ = [
    "STORE_WAIT",
    "CANCELLED",
    "DONE",
    "ERROR",
    "FINISHED",
    "QUEUED",
    "RUNNING",
    "UNFINISHED",
    "Training",
    "TrainingStore",
    "format_date",
]
