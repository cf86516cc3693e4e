"""JobStore: the durable record of every prediction job, beside the trainings.

Prediction jobs live in the training store's own SQLite file
(``trainings.sqlite`` in the state directory), in a table of their own,
``predict_jobs``.  Opening the store creates that table when it is missing,
so a state directory written by an older deepaas gains it on first use and
keeps its trainings untouched; an older deepaas ignores the table.  The file
keeps the training store's guarantees: WAL mode, one short ``BEGIN
IMMEDIATE`` transaction per change, a connection per operation.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import datetime
import json
import os
import sqlite3
import time
import uuid as uuid_mod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from deepaas.jobs.errors import InvalidJobRequest
from deepaas.training.store import (
    CANCELLED,
    DONE,
    ERROR,
    QUEUED,
    RUNNING,
    TrainingStore,
    format_date,
)

#: A job the server stopped (or lost) before it finished; never retried.
INTERRUPTED = "interrupted"
UNFINISHED = (QUEUED, RUNNING)
FINISHED = (DONE, ERROR, CANCELLED, INTERRUPTED)
STATUSES = (*UNFINISHED, *FINISHED)
#: The owner of a job run by SLURM is ``slurm:<job id>`` (no server owns it).
SLURM_OWNER = "slurm:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predict_jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    args TEXT NOT NULL,
    accept TEXT,
    submitted_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    media_type TEXT,
    result_size INTEGER,
    error_status INTEGER,
    message TEXT,
    job_dir TEXT NOT NULL,
    owner TEXT NOT NULL,
    owner_host TEXT NOT NULL,
    owner_pid INTEGER NOT NULL,
    scheduler_state TEXT,
    scheduler_reason TEXT
);
CREATE INDEX IF NOT EXISTS predict_jobs_by_model ON predict_jobs (model, seq);
CREATE INDEX IF NOT EXISTS predict_jobs_by_status ON predict_jobs (status);
"""

# SQL text is built only from these column names and '?' placeholders
# (marked noqa: S608 where it is joined); every value is a bound parameter.
_COLUMNS = (
    "uuid",
    "model",
    "status",
    "args",
    "accept",
    "submitted_at",
    "started_at",
    "finished_at",
    "media_type",
    "result_size",
    "error_status",
    "message",
    "job_dir",
    "owner",
    "owner_host",
    "owner_pid",
    "scheduler_state",
    "scheduler_reason",
)
_UPDATABLE = {
    "status",
    "started_at",
    "finished_at",
    "media_type",
    "result_size",
    "error_status",
    "message",
    "scheduler_state",
    "scheduler_reason",
}


@dataclasses.dataclass
class PredictJob:
    """One prediction job as recorded.

    ``job_dir`` is relative to the state directory; it holds the job's
    uploads while it runs and its result once it has ended.  ``accept`` is
    the media type chosen at submission (None for a model without
    choices); ``media_type`` the one the model answered.  An ``error`` job
    keeps, as its result, the JSON error the synchronous predict would have
    answered, with that answer's HTTP status in ``error_status``.
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
    accept: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    media_type: str | None = None
    result_size: int | None = None
    error_status: int | None = None
    message: str | None = None
    scheduler_state: str | None = None
    scheduler_reason: str | None = None

    @classmethod
    def submitted(
        cls,
        *,
        uuid: str,
        model: str,
        args: dict[str, Any],
        accept: str | None,
        job_dir: str,
        owner: str,
    ) -> PredictJob:
        """A job ``owner`` has just accepted: queued, now."""
        return cls(
            uuid=uuid,
            model=model,
            status=QUEUED,
            args=args,
            accept=accept,
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
    def has_result(self) -> bool:
        """Whether a result (or the error answer) can be fetched."""
        return self.status in (DONE, ERROR) and self.media_type is not None

    def to_json(self) -> dict[str, Any]:
        """The job as answered, keyed like a training (uuid, date, status...)."""
        body: dict[str, Any] = {
            "uuid": self.uuid,
            "model": self.model,
            "status": self.status,
            "date": format_date(self.submitted_at),
            "args": self.args,
            "accept": self.accept,
        }
        if self.started_at is not None:
            body["start_date"] = format_date(self.started_at)
        if self.finished_at is not None:
            body["finish_date"] = format_date(self.finished_at)
        if self.message is not None and self.status != DONE:
            body["message"] = self.message
        if self.has_result:
            body["media_type"] = self.media_type
        if self.owner.startswith(SLURM_OWNER):
            body["slurm"] = {
                "job_id": self.owner[len(SLURM_OWNER) :],
                "state": self.scheduler_state,
                "reason": self.scheduler_reason,
            }
        if self.status == DONE and self.finished_at is not None:
            ran = max(0.0, self.finished_at - (self.started_at or self.finished_at))
            body["result"] = {
                "media_type": self.media_type,
                "size": self.result_size,
                "finish_date": format_date(self.finished_at),
                "duration": str(datetime.timedelta(seconds=ran)),
            }
        return body

    def _row(self) -> tuple[Any, ...]:
        values = dataclasses.asdict(self)
        values["args"] = json.dumps(self.args)
        return tuple(values[column] for column in _COLUMNS)


def parse_job_id(value: str) -> str:
    """A job id in its canonical form (32 hex digits), or a 400."""
    try:
        return uuid_mod.UUID(value.strip()).hex
    except ValueError:
        raise InvalidJobRequest(
            f"{value!r} is not a prediction job id: expected 32 hexadecimal "
            "digits, as answered in the Location of POST .../predict/"
        ) from None


def _from_row(row: sqlite3.Row) -> PredictJob:
    values = {column: row[column] for column in _COLUMNS}
    values["args"] = json.loads(values["args"])
    return PredictJob(**values)


class JobStore:
    """Reads and writes prediction jobs in the training store's file."""

    def __init__(self, path: Path | str, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout

    def create(self) -> None:
        """Create the file (as the training store does) and the jobs' table.

        The table is added to an existing file, whatever wrote it: that is
        the whole migration, and it leaves the trainings as they were.
        """
        TrainingStore(self.path, busy_timeout=self.busy_timeout).create()
        with self._transaction() as conn:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=FULL")
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _select(self, where: str = "", params: Iterable[Any] = ()) -> list[PredictJob]:
        query = f"SELECT {', '.join(_COLUMNS)} FROM predict_jobs {where}"  # noqa: S608
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY seq", tuple(params)).fetchall()
        return [_from_row(row) for row in rows]

    def get(self, uuid: str) -> PredictJob | None:
        """The job ``uuid``, or None."""
        found = self._select("WHERE uuid = ?", (uuid,))
        return found[0] if found else None

    def list(self, model: str | None = None) -> builtins.list[PredictJob]:
        """Jobs in submission order, of one model or of all."""
        if model is None:
            return self._select()
        return self._select("WHERE model = ?", (model,))

    def unfinished(self) -> builtins.list[PredictJob]:
        """Queued and running jobs of every server."""
        return self._select("WHERE status IN (?, ?)", UNFINISHED)

    def count(self) -> int:
        """How many jobs are recorded, finished or not."""
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM predict_jobs").fetchone()[0])

    def insert(self, job: PredictJob) -> None:
        """Record a new job."""
        marks = ", ".join("?" for _ in _COLUMNS)
        with self._transaction() as conn:
            conn.execute(
                f"INSERT INTO predict_jobs ({', '.join(_COLUMNS)}) VALUES ({marks})",  # noqa: S608
                job._row(),
            )

    def update(self, uuid: str, *, only_if: Iterable[str] = (), **changes: Any) -> bool:
        """Change some fields; with ``only_if``, only from one of those statuses.

        Answers whether the job was changed, so that two servers racing to
        settle the same job cannot both win.
        """
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)} of a prediction job")
        assignments = ", ".join(f"{column} = ?" for column in changes)
        query = f"UPDATE predict_jobs SET {assignments} WHERE uuid = ?"  # noqa: S608
        params: builtins.list[Any] = [*changes.values(), uuid]
        statuses = tuple(only_if)
        if statuses:
            query += f" AND status IN ({', '.join('?' for _ in statuses)})"
            params.extend(statuses)
        with self._transaction() as conn:
            return conn.execute(query, params).rowcount == 1

    def delete(self, uuid: str) -> bool:
        """Forget a finished job."""
        marks = ", ".join("?" for _ in FINISHED)
        with self._transaction() as conn:
            cursor = conn.execute(
                f"DELETE FROM predict_jobs WHERE uuid = ? AND status IN ({marks})",  # noqa: S608
                (uuid, *FINISHED),
            )
            return cursor.rowcount == 1

    def prune(
        self, *, keep: int = 0, keep_days: float = 0, now: float | None = None
    ) -> builtins.list[PredictJob]:
        """Forget finished jobs beyond the retention; answer those removed.

        The trainings' rules: ``keep`` newest finished jobs per model,
        ``keep_days`` days after they finished; zero switches a rule off.
        """
        if not keep and not keep_days:
            return []
        now = time.time() if now is None else now
        marks = ", ".join("?" for _ in FINISHED)
        columns = ", ".join(_COLUMNS)
        doomed: dict[str, sqlite3.Row] = {}
        with self._transaction() as conn:
            if keep:
                rows = conn.execute(
                    f"SELECT {columns} FROM (SELECT *, ROW_NUMBER() OVER ("  # noqa: S608
                    "PARTITION BY model ORDER BY finished_at DESC, seq DESC) AS rank "
                    f"FROM predict_jobs WHERE status IN ({marks})) WHERE rank > ?",
                    (*FINISHED, keep),
                ).fetchall()
                doomed.update((row["uuid"], row) for row in rows)
            if keep_days:
                rows = conn.execute(
                    f"SELECT {columns} FROM predict_jobs WHERE status IN ({marks}) "  # noqa: S608
                    "AND finished_at < ?",
                    (*FINISHED, now - keep_days * 86400),
                ).fetchall()
                doomed.update((row["uuid"], row) for row in rows)
            conn.executemany(
                "DELETE FROM predict_jobs WHERE uuid = ?", [(u,) for u in doomed]
            )
        return [_from_row(row) for row in doomed.values()]


__all__ = [
    "FINISHED",
    "SLURM_OWNER",
    "INTERRUPTED",
    "STATUSES",
    "UNFINISHED",
    "JobStore",
    "PredictJob",
    "parse_job_id",
]
