"""Store work off the event loop, and what a failing store answers.

The event loop must never wait on SQLite's lock or on a slow or full disk:
every read and write of the training store and of the state directory runs
in one thread of its own (:class:`StoreThread`), and the errors of SQLite
and of the disk become the domain's 503 and 507 (:func:`store_failure`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from deepaas.exceptions import DeepaasError
from deepaas.training.errors import (
    InsufficientStorage,
    TrainingStoreBusy,
    TrainingStoreUnusable,
)
from deepaas.training.store import STORE_WAIT

__all__ = ["StoreThread", "store_failure"]

T = TypeVar("T")


def store_failure(exc: BaseException, path: Path) -> DeepaasError | None:
    """The domain error (503 or 507) for a failure of the store or its disk.

    None for anything else: a bug stays a bug.
    """
    if isinstance(exc, DeepaasError):
        return exc
    where = f"the training store {str(path)!r}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage(
            f"the state directory's disk is full ({exc.strerror}); "
            "free space there and retry"
        )
    if not isinstance(exc, sqlite3.Error):
        return None
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError):
        if "locked" in text or "busy" in text:
            return TrainingStoreBusy(
                f"{where} is locked by another process for more than "
                f"{STORE_WAIT:g} s; retry later"
            )
        if "full" in text:
            return InsufficientStorage(
                f"{where} cannot be written: {text}; free space in the state "
                "directory and retry"
            )
        if "disk I/O" in text or "unable to open" in text:
            if _disk_full(path.parent):  # what SQLite says of a full disk, too
                return InsufficientStorage(
                    f"{where} cannot be used: {text}: the state directory's "
                    "disk is full; free space there and retry"
                )
            return TrainingStoreUnusable(f"{where} cannot be used: {text}")
    return TrainingStoreUnusable(
        f"training store unusable: {text} ({str(path)!r}); stop the servers "
        "that use it, move the file away and start again (a new store is made)"
    )


def _disk_full(directory: Path) -> bool:
    try:
        return shutil.disk_usage(directory).free < _NEARLY_FULL
    except OSError:
        return False


#: Free bytes under which SQLite's I/O errors are blamed on a full disk.
_NEARLY_FULL = 64 * 1024


class StoreThread:
    """Runs the store's (and the state directory's) work off the event loop.

    One thread, so the event loop never waits on SQLite or the disk and
    the work of one server never races itself.  :meth:`run` answers
    :class:`TrainingStoreBusy` when the work has not started within
    :data:`STORE_WAIT`; work that has started is waited for (SQLite's own
    busy timeout bounds it), so that nothing answered as refused is done
    after all.
    """

    def __init__(self, *, wait: float = STORE_WAIT) -> None:
        self.wait = wait
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="deepaas-store"
        )

    async def run(self, path: Path, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the store's thread; store and disk failures as 503/507."""
        future = self._executor.submit(fn, *args)
        waiting = asyncio.wrap_future(future)
        done, _ = await asyncio.wait({waiting}, timeout=self.wait)
        if not done and future.cancel():
            raise TrainingStoreBusy(
                f"the training store {str(path)!r} did not answer within "
                f"{self.wait:g} s (another process holds it); retry later"
            )
        try:
            return await waiting
        except Exception as exc:
            failure = store_failure(exc, path)
            if failure is None or failure is exc:
                raise
            raise failure from exc

    def close(self) -> None:
        """Take no more work; what was given still finishes, in its thread."""
        self._executor.shutdown(wait=False, cancel_futures=False)
