"""What deepaas-cli writes: the answer on standard output and in a file.

DEEPaaS 2.x's rules for ``--deepaas_method_output PATH`` are kept, because
platform scripts depend on them: a prediction's file gets the extension of
its media type (``--accept``, ``.json`` when none), appended to PATH when
PATH's own differs, and a warning whose fifth space-separated field is the
new path is logged, ``===================> New output is PATH.json``; the
platform's serverless script greps that line and moves the file.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import sys
from typing import Any

from deepaas.cmd._general import OUTPUT_OPTION
from deepaas.model.wrapper import is_json_media_type, read_if_file, to_json_bytes

__all__ = ["PROG", "OutputError", "answer_bytes", "emit", "prediction_output_path"]

PROG = "deepaas-cli"
JSON = "application/json"
LOG = logging.getLogger("deepaas.cli")


class OutputError(ValueError):
    """The answer cannot be shown where it was asked for (exit status 2)."""


def prediction_output_path(path: str, media_type: str | None) -> str:
    """Where a prediction of ``media_type`` is saved when PATH was asked for.

    ``media_type`` is the model's ``accept`` value (None: JSON).  A type
    with no known extension leaves PATH as it is, as in DEEPaaS 2.x.
    """
    extension = mimetypes.guess_extension(media_type) if media_type else ".json"
    if media_type and is_json_media_type(media_type) and extension is None:
        extension = ".json"
    if extension is None or os.path.splitext(path)[1] == extension:
        return path
    renamed = path + extension
    # Two lines; the second is read by scripts: its fifth field is the path,
    # with nothing after it.
    LOG.warning(
        "You are trying to store %s type data in the file with %s extension!\n"
        "===================> New output is %s",
        extension,
        os.path.splitext(path)[1],
        renamed,
    )
    return renamed


def answer_bytes(result: Any, accept: str | None) -> tuple[bytes, str]:
    """What predict returned, as bytes and a media type."""
    result = read_if_file(result)
    json_accept = not accept or is_json_media_type(accept)
    if isinstance(result, (bytes, bytearray, memoryview)):
        media = str(accept) if not json_accept else "application/octet-stream"
        return bytes(result), media
    if isinstance(result, str) and not json_accept:
        return result.encode(), str(accept)
    return to_json_bytes(result), JSON


def emit(body: bytes, media: str, output: str | None) -> int:
    """Print the answer (JSON: one line) and save it in ``output`` if given."""
    if media == JSON:
        # One line: scripts written for DEEPaaS 2.x cut the answer out of the
        # output with grep -Po '{.*}'.
        text = body.decode() + "\n"
        sys.stdout.write(text)
        sys.stdout.flush()
        if output:
            _write(output, text.encode())
        return 0
    if output:
        _write(output, body)
        print(
            f"{PROG}: wrote {len(body)} bytes of {media} to {output}", file=sys.stderr
        )
        return 0
    if sys.stdout.isatty():
        raise OutputError(
            f"the answer is {media}, not text for a terminal: save it with "
            f"{OUTPUT_OPTION} FILE or redirect standard output"
        )
    sys.stdout.flush()
    sys.stdout.buffer.write(body)
    sys.stdout.buffer.flush()
    return 0


def _write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (no half-written file on failure).

    Missing folders on the way are created, as DEEPaaS 2.x does.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    partial = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.part")
    try:
        with open(partial, "wb") as handle:
            handle.write(data)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
