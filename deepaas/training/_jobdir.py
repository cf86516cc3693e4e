"""A training's own directory: its log, its copied uploads and its outcome.

``<state_dir>/trainings/<uuid>/`` holds ``training.log`` (written by the
server, see :mod:`._logwriter`), ``uploads/`` (the files the training was
started with, removed when it ends) and ``outcome.json`` (written by the
training process, read and removed by the server once the process has
exited).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from deepaas.engine._process import describe_exit
from deepaas.model.files import UploadedFile
from deepaas.model.wrapper import RawArguments
from deepaas.training._logwriter import append_line
from deepaas.training.store import (
    CANCELLED,
    CANCELLED_MESSAGE,
    DONE,
    ERROR,
    INTERRUPTED_BY_SHUTDOWN,
)

LOG_NAME = "training.log"
OUTCOME_NAME = "outcome.json"
UPLOADS_DIR = "uploads"


def move_uploads(raw: RawArguments, directory: Path) -> RawArguments:
    """The same arguments, with every upload moved into ``directory``.

    A copy keeps the client's file name (after an index, so that two uploads
    never collide), since models often look at the extension.
    """
    pairs: list[tuple[str, Any]] = []
    for index, (name, value) in enumerate(raw.pairs):
        if isinstance(value, UploadedFile):
            directory.mkdir(exist_ok=True)
            base = os.path.basename(value.original_filename.replace("\\", "/"))
            target = directory / _fit_file_name(
                f"{index}-{base.lstrip('.') or 'upload'}"
            )
            shutil.move(value.filename, target)
            value = value._replace(filename=str(target))
        pairs.append((name, value))
    return RawArguments(pairs=pairs, json_body=raw.json_body)


def _fit_file_name(name: str, limit: int = 255) -> str:
    """``name`` shortened to ``limit`` bytes, its extension kept; no NUL.

    A client's file name may be longer than the file system allows (255
    bytes on most): the copy keeps its start and its extension.
    """
    name = name.replace("\0", "")
    if len(name.encode()) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode()) > 16:
        stem, dot, ext = name, "", ""
    room = limit - len(dot.encode()) - len(ext.encode())
    short = stem.encode()[:room].decode(errors="ignore")
    return f"{short}{dot}{ext}"


def read_outcome(path: Path) -> dict[str, Any] | None:
    """The outcome a training process wrote, or None when it wrote none."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def local_outcome(
    job_dir: Path, stop_reason: str | None, exitcode: int | None, timeout: float
) -> tuple[str, Any, str | None]:
    """Status, output and message of a training whose local process ended.

    ``stop_reason``: why the server stopped it (``cancel``, ``timeout`` after
    ``timeout`` s, ``shutdown``), None when it ended by itself.
    """
    outcome = read_outcome(job_dir / OUTCOME_NAME)
    if outcome is not None and outcome.get("status") == DONE:
        return DONE, outcome.get("output"), None
    if stop_reason == "cancel":
        return CANCELLED, None, CANCELLED_MESSAGE
    if stop_reason == "timeout":
        return ERROR, None, (
            f"stopped: it ran longer than --train-timeout ({timeout:g} s)"
        )
    if stop_reason == "shutdown":
        return ERROR, None, INTERRUPTED_BY_SHUTDOWN
    if outcome is not None:
        return ERROR, None, str(outcome.get("message", "the training failed"))
    return ERROR, None, (
        f"the training process ended without a result: {describe_exit(exitcode)}"
    )


def append_log(path: Path, message: str, max_bytes: int = 0) -> None:
    """Add a line of the server's to a training's log, on a line of its own.

    For a log that no :class:`~._logwriter.LogWriter` of this process is
    writing at the same time (a finished or a remote training).
    """
    append_line(path, max_bytes, message)


def remove_file(path: Path) -> None:
    """Delete a file; a missing one is not an error."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
