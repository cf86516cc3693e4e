"""A prediction job's own directory: its uploads while it runs, then its result.

``<state_dir>/predict-jobs/<uuid>/`` holds ``uploads/`` (the request's
files, moved there at submission and removed when the job ends),
``result`` (the answer's body, whatever its media type), the uploads'
digests and the job's provenance record (see :mod:`._provenance`) and, for
a job run
by SLURM, the job's script, its arguments and ``outcome.json`` (how the
prediction ended, written by the job; read and removed by a server).
Forgetting the job removes the whole directory.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from deepaas.exceptions import DeepaasError
from deepaas.model.files import UploadedFile
from deepaas.model.wrapper import JSON_MEDIA_TYPE, RawArguments
from deepaas.provenance.trainings import note_inputs
from deepaas.training._jobdir import move_uploads, valid_text
from deepaas.training.store import PRIVATE_DIR_MODE, write_private

JOBS_DIR = "predict-jobs"
UPLOADS_DIR = "uploads"
RESULT_NAME = "result"
OUTCOME_NAME = "outcome.json"
#: What the error result of a failure that is not the model's says.
INTERNAL_ERROR = "the prediction failed inside the server; its log tells why"


def make_job_dir(raw: RawArguments, job_dir: Path) -> RawArguments:
    """Create a job's directory (0700) and move the request's uploads into it.

    The job then holds its own copies: the request's temporary files are
    gone, and no file of the user's is ever referred to.
    """
    job_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True)
    moved = move_uploads(raw, job_dir / UPLOADS_DIR)
    note_inputs(job_dir, moved)  # hashed as received, for the provenance record
    return moved


def recorded_args(raw: RawArguments) -> dict[str, Any]:
    """The arguments as sent, for the job's record (uploads by name and type).

    A prediction's arguments are validated where the model runs, so the
    record holds what the client sent; a value sent twice becomes a list.
    """
    args: dict[str, Any] = {}
    if isinstance(raw.json_body, dict):
        args.update(raw.json_body)
    for name, value in raw.pairs:
        if isinstance(value, UploadedFile):
            value = {
                "filename": value.original_filename,
                "content_type": value.content_type,
            }
        if name in args and name not in (raw.json_body or {}):
            previous = args[name]
            args[name] = (
                [*previous, value]
                if isinstance(previous, list)
                else [
                    previous,
                    value,
                ]
            )
        else:
            args[name] = value
    return valid_text(args)


def write_result(job_dir: Path, body: bytes) -> int:
    """Write the job's result (0600, atomically, durably); answer its size."""
    write_private(job_dir / RESULT_NAME, body, sync=True)
    return len(body)


def error_answer(exc: BaseException) -> tuple[int, bytes, str]:
    """The HTTP status, JSON body and message a failed prediction answers.

    The same answer the synchronous predict gives (a 422's flat
    ``{argument: [messages]}`` included); a failure that is not a domain
    error is a 500 whose details stay in the server's log.
    """
    if isinstance(exc, DeepaasError):
        body, status, message = exc.to_json(), exc.status, exc.message
    else:
        body, status, message = {"message": INTERNAL_ERROR}, 500, INTERNAL_ERROR
    return status, json.dumps(body).encode(), message


def remove_uploads(job_dir: Path) -> None:
    """Remove what the job was started with; its result stays."""
    shutil.rmtree(job_dir / UPLOADS_DIR, ignore_errors=True)


def result_media_type(media_type: str) -> str:
    """The media type as answered: JSON with its charset, as predict answers it."""
    if media_type == JSON_MEDIA_TYPE:
        return "application/json; charset=utf-8"
    return media_type


@dataclasses.dataclass(frozen=True)
class Ending:
    """How a job ended, as it is recorded (``body``: its result, if any)."""

    status: str
    message: str | None = None
    body: bytes | None = None
    media_type: str | None = None
    error_status: int | None = None
