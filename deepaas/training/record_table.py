"""One table of records in the state directory's SQLite file.

Trainings and prediction jobs are kept alike: a row per record, found by
its uuid, changed in one short ``BEGIN IMMEDIATE`` transaction (on a
connection opened for that change alone, with ``synchronous=FULL``),
finished ones forgotten by the same retention rules.  This base class is
that shared part; :class:`~deepaas.training.store.TrainingStore` and
:class:`~deepaas.jobs.store.JobStore` add their schema and what only they
count.
"""

from __future__ import annotations

import builtins
import contextlib
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar


class Record(Protocol):
    """What a table's record offers: its values in column order."""

    def _row(self) -> tuple[Any, ...]: ...


R = TypeVar("R", bound=Record)


class RecordTable(Generic[R]):
    """Reads and writes the records of one table (see the module docstring).

    Subclasses name their ``table``, its ``columns`` (in the order of a
    record's ``_row()``), the ``updatable`` ones, the ``finished`` and
    ``unfinished`` statuses, ``what`` a record is called in messages, and
    turn a row back into a record (:meth:`_from_row`).  SQL text is built
    only from these names and ``?`` placeholders (hence the ``noqa: S608``
    where it is joined); every value is a bound parameter.
    """

    table: ClassVar[str]
    columns: ClassVar[tuple[str, ...]]
    updatable: ClassVar[frozenset[str]]
    finished: ClassVar[tuple[str, ...]]
    unfinished_statuses: ClassVar[tuple[str, ...]]
    what: ClassVar[str]

    def __init__(self, path: Path | str, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout

    def _from_row(self, row: sqlite3.Row) -> R:
        raise NotImplementedError

    def _stored(self, changes: dict[str, Any]) -> dict[str, Any]:
        """``changes`` as stored (a subclass encodes what it keeps as JSON)."""
        return changes

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

    # -- reading -------------------------------------------------------------

    def _select(self, where: str = "", params: Iterable[Any] = ()) -> list[R]:
        query = f"SELECT {', '.join(self.columns)} FROM {self.table} {where}"  # noqa: S608
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY seq", tuple(params)).fetchall()
        return [self._from_row(row) for row in rows]

    def get(self, uuid: str) -> R | None:
        """The record ``uuid``, or None."""
        found = self._select("WHERE uuid = ?", (uuid,))
        return found[0] if found else None

    def list(self, model: str | None = None) -> builtins.list[R]:
        """Records in submission order, of one model or of all."""
        if model is None:
            return self._select()
        return self._select("WHERE model = ?", (model,))

    def unfinished(self) -> builtins.list[R]:
        """Queued and running records of every server."""
        marks = ", ".join("?" for _ in self.unfinished_statuses)
        return self._select(f"WHERE status IN ({marks})", self.unfinished_statuses)

    # -- writing -------------------------------------------------------------

    def insert(self, record: R) -> None:
        """Record a new one."""
        marks = ", ".join("?" for _ in self.columns)
        with self._transaction() as conn:
            conn.execute(
                f"INSERT INTO {self.table} ({', '.join(self.columns)}) "  # noqa: S608
                f"VALUES ({marks})",
                record._row(),
            )

    def update(self, uuid: str, *, only_if: Iterable[str] = (), **changes: Any) -> bool:
        """Change some fields; with ``only_if``, only from one of those statuses.

        Answers whether the record was changed, so that two servers racing
        to settle the same record cannot both win.
        """
        unknown = set(changes) - self.updatable
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)} of a {self.what}")
        changes = self._stored(changes)
        assignments = ", ".join(f"{column} = ?" for column in changes)
        query = f"UPDATE {self.table} SET {assignments} WHERE uuid = ?"  # noqa: S608
        params: builtins.list[Any] = [*changes.values(), uuid]
        statuses = tuple(only_if)
        if statuses:
            query += f" AND status IN ({', '.join('?' for _ in statuses)})"
            params.extend(statuses)
        with self._transaction() as conn:
            return conn.execute(query, params).rowcount == 1

    def delete(self, uuid: str, *, only_if: Iterable[str] | None = None) -> bool:
        """Forget a record (by default only a finished one)."""
        statuses = tuple(self.finished if only_if is None else only_if)
        marks = ", ".join("?" for _ in statuses)
        with self._transaction() as conn:
            cursor = conn.execute(
                f"DELETE FROM {self.table} WHERE uuid = ? AND status IN ({marks})",  # noqa: S608
                (uuid, *statuses),
            )
            return cursor.rowcount == 1

    def prune(
        self, *, keep: int = 0, keep_days: float = 0, now: float | None = None
    ) -> builtins.list[R]:
        """Forget finished records beyond the retention; answer those removed.

        ``keep`` keeps the newest N finished records of each model;
        ``keep_days`` forgets those that finished more than D days ago.
        Zero switches either rule off.
        """
        if not keep and not keep_days:
            return []
        now = time.time() if now is None else now
        marks = ", ".join("?" for _ in self.finished)
        columns = ", ".join(self.columns)
        doomed: dict[str, sqlite3.Row] = {}
        with self._transaction() as conn:
            if keep:
                rows = conn.execute(
                    f"SELECT {columns} FROM (SELECT *, ROW_NUMBER() OVER ("  # noqa: S608
                    "PARTITION BY model ORDER BY finished_at DESC, seq DESC) AS rank "
                    f"FROM {self.table} WHERE status IN ({marks})) WHERE rank > ?",
                    (*self.finished, keep),
                ).fetchall()
                doomed.update((row["uuid"], row) for row in rows)
            if keep_days:
                rows = conn.execute(
                    f"SELECT {columns} FROM {self.table} "  # noqa: S608
                    f"WHERE status IN ({marks}) AND finished_at < ?",
                    (*self.finished, now - keep_days * 86400),
                ).fetchall()
                doomed.update((row["uuid"], row) for row in rows)
            conn.executemany(
                f"DELETE FROM {self.table} WHERE uuid = ?",  # noqa: S608
                [(u,) for u in doomed],
            )
        return [self._from_row(row) for row in doomed.values()]


__all__ = ["Record", "RecordTable"]
