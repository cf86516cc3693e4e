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

import dataclasses
import datetime
import json
import os
import sqlite3
import time
import uuid as uuid_mod
from typing import Any

from deepaas.jobs.errors import InvalidJobRequest
from deepaas.training.record_table import RecordTable
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


class JobStore(RecordTable[PredictJob]):
    """Reads and writes prediction jobs in the training store's file."""

    table = "predict_jobs"
    columns = _COLUMNS
    updatable = frozenset(_UPDATABLE)
    finished = FINISHED
    unfinished_statuses = UNFINISHED
    what = "prediction job"

    def create(self) -> None:
        """Create the file (as the training store does) and the jobs' table.

        The table is added to an existing file, whatever wrote it: that is
        the whole migration, and it leaves the trainings as they were.
        """
        TrainingStore(self.path, busy_timeout=self.busy_timeout).create()
        with self._transaction() as conn:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)

    def _from_row(self, row: sqlite3.Row) -> PredictJob:
        return _from_row(row)

    def count(self) -> int:
        """How many jobs are recorded, finished or not."""
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM predict_jobs").fetchone()[0])


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
