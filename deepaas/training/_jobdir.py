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

from deepaas.engine.processes import describe_exit
from deepaas.model.files import UploadedFile
from deepaas.model.wrapper import RawArguments
from deepaas.training._logwriter import append_line
from deepaas.training.store import (
    CANCELLED,
    CANCELLED_MESSAGE,
    DONE,
    ERROR,
    INTERRUPTED_BY_SHUTDOWN,
    PRIVATE_DIR_MODE,
)

LOG_NAME = "training.log"
OUTCOME_NAME = "outcome.json"
UPLOADS_DIR = "uploads"
#: The exit status of a training process that could not write its outcome
#: (EX_CANTCREAT): its directory's disk is full, most often.
OUTCOME_UNWRITTEN = 73


def move_uploads(raw: RawArguments, directory: Path) -> RawArguments:
    """The same arguments, with every upload moved into ``directory``.

    A copy keeps the client's file name (after an index, so that two uploads
    never collide), since models often look at the extension.
    """
    pairs: list[tuple[str, Any]] = []
    for index, (name, value) in enumerate(raw.pairs):
        if isinstance(value, UploadedFile):
            directory.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
            original = valid_text(value.original_filename)
            base = os.path.basename(original.replace("\\", "/"))
            target = directory / _fit_file_name(
                f"{index}-{base.lstrip('.') or 'upload'}"
            )
            shutil.move(value.filename, target)
            value = value._replace(filename=str(target), original_filename=original)
        pairs.append((name, value))
    return RawArguments(pairs=pairs, json_body=raw.json_body)


def valid_text(value: Any) -> Any:
    """``value`` with every string made valid UTF-8: U+FFFD for undecodable bytes.

    A client's file name may hold bytes that are not UTF-8 (HTTP decodes
    them as lone surrogates); a training record, a log and the model's
    result must be written as UTF-8, so the name is recorded as readable
    text, as a browser would show it.
    """
    if isinstance(value, str):
        try:  # the client's bytes, where HTTP decoded them as surrogates
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = value.encode("utf-8", "surrogatepass")
        return raw.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return type(value)(valid_text(item) for item in value)
    if isinstance(value, dict):
        return {valid_text(key): valid_text(item) for key, item in value.items()}
    return value


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
    if exitcode == OUTCOME_UNWRITTEN:
        return ERROR, None, (
            "the training ended, but its outcome could not be written to its "
            "directory (is the state directory's disk full?)"
        )
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
