"""The results of a batch run: JSON Lines records and output files.

Layout of ``--output-dir``::

    results.jsonl                     one record per input (unsharded run)
    results-0002-of-0004.jsonl        the records of shard 2 of 4
    outputs/<name>-<hash8><ext>       non-JSON answers, one file per input
    run.json                          what defines the run, and its inputs
    merged.jsonl, missing.txt         written by ``deepaas-predict merge``

A record is one line of JSON written with a single ``write()`` to a file
opened in append mode, so a killed task leaves at worst one truncated last
line, which readers ignore and the next writer terminates.  Output files are
written under a temporary name and renamed into place before their record
is written: a record never points at a half-written file.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import mimetypes
import os
import time
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from deepaas.batch.inputs import InputItem
from deepaas.batch.sharding import Shard

LOG = logging.getLogger(__name__)

OUTPUTS_DIR = "outputs"
RUN_FILE = "run.json"
MERGED_FILE = "merged.jsonl"
MISSING_FILE = "missing.txt"

_EXTENSIONS = {
    "application/octet-stream": ".bin",
    "text/plain": ".txt",
    "text/csv": ".csv",
    "image/jpeg": ".jpg",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
}


def results_filename(shard: Shard) -> str:
    """The results file of one task: one per shard, so tasks never share one."""
    if shard.is_whole:
        return "results.jsonl"
    return f"results-{shard.index:04d}-of-{shard.count:04d}.jsonl"


def results_files(output_dir: str | Path) -> list[Path]:
    """Every results file in ``output_dir`` (not the merged one), sorted."""
    return sorted(p for p in Path(output_dir).glob("results*.jsonl") if p.is_file())


def extension_for(content_type: str) -> str:
    """A file extension for a media type (``.bin`` when unknown)."""
    media = content_type.split(";")[0].strip().lower()
    return _EXTENSIONS.get(media) or mimetypes.guess_extension(media) or ".bin"


def output_name(item: InputItem, content_type: str) -> str:
    """The unique, predictable file name of an input's non-JSON answer.

    ``<input name>-<first 8 hex digits of sha1(input key)><extension>``:
    the name shows which input it answers, the digest keeps inputs with the
    same name in different folders apart.
    """
    digest = hashlib.sha1(
        item.key.encode("utf-8", "surrogateescape"), usedforsecurity=False
    ).hexdigest()
    return f"{item.label}-{digest[:8]}{extension_for(content_type)}"


def write_output_file(directory: Path, name: str, body: bytes) -> Path:
    """Write ``body`` atomically as ``directory/name``."""
    final = directory / name
    # One temporary name per output: a rerun that redoes this input replaces
    # a temporary file a killed run left behind.
    partial = directory / f".{name}.part"
    with open(partial, "wb") as handle:
        handle.write(body)
    os.replace(partial, final)
    return final


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def _now() -> str:
    """UTC time with milliseconds, ISO 8601; formats each second only once."""
    now = time.time()
    whole = int(now)
    if _second[0] != whole:
        stamp = datetime.datetime.fromtimestamp(whole, datetime.timezone.utc)
        _second[0], _second[1] = whole, stamp.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{int((now - whole) * 1000):03d}+00:00"


def _quote(text: str) -> str:
    # ASCII-only JSON string: file names that are not valid UTF-8 (lone
    # surrogates) still give a valid record.
    return encode_basestring_ascii(text)


def ok_record(
    key: str,
    seconds: float,
    *,
    run: str | None = None,
    json_body: bytes | None = None,
    output_file: str | None = None,
    content_type: str | None = None,
    sha256: dict[str, Any] | None = None,
) -> bytes:
    """The line recording a success; a JSON answer is embedded as it is.

    ``run`` is the id of the run (see :mod:`deepaas.batch.runfile`);
    ``sha256`` the digests of the input, its files and the answer, for the
    run's provenance record (:mod:`deepaas.batch.provenance`).
    """
    run_part = f', "run": "{run}"' if run else ""
    if sha256:
        run_part += f', "sha256": {json.dumps(sha256, ensure_ascii=True)}'
    head = (
        f'{{"input": {_quote(key)}, "status": "ok", "seconds": {seconds:.6f}, '
        f'"finished": "{_now()}"{run_part}'
    )
    if output_file is not None:
        return (
            f'{head}, "output_file": {json.dumps(output_file)}, '
            f'"content_type": {json.dumps(content_type)}}}\n'
        ).encode()
    # The model's JSON answer is already encoded on one line (json.dumps never
    # writes a raw newline): splice it in instead of decoding and re-encoding.
    return b"".join((head.encode(), b', "output": ', json_body or b"null", b"}\n"))


def error_record(
    key: str,
    seconds: float,
    error_type: str,
    message: str,
    *,
    run: str | None = None,
    **extra: Any,
) -> bytes:
    """The line recording a failure."""
    record: dict[str, Any] = {
        "input": key,
        "status": "error",
        "seconds": round(seconds, 6),
        "finished": _now(),
    }
    if run:
        record["run"] = run
    record["error_type"] = error_type
    record["error"] = message
    record.update({k: v for k, v in extra.items() if v})
    return json.dumps(record, default=str).encode() + b"\n"


class ResultsWriter:
    """Appends records to one results file; each record is a single write()."""

    def __init__(self, path: str | Path, *, fsync_seconds: float = 5.0) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._fsync_seconds = fsync_seconds
        self._unsynced = 0
        self._last_sync = time.monotonic()
        self._terminate_partial_line()

    def _terminate_partial_line(self) -> None:
        """After a kill mid-write, end the broken line so the next one is whole."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as handle:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                os.write(self._fd, b"\n")

    def write(self, line: bytes) -> None:
        """Append one record (a full line ending in a newline)."""
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._unsynced += 1
        # fsync guards against a node crash only (a killed process loses no
        # written record) and costs milliseconds: every few seconds is enough.
        if time.monotonic() - self._last_sync >= self._fsync_seconds:
            self.sync()

    def sync(self) -> None:
        """Make the records written so far durable."""
        if self._unsynced:
            os.fsync(self._fd)
            self._unsynced = 0
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(offset, record)`` for every whole record of a results file.

    A last line without its newline (a write cut short by a kill) and lines
    that are not JSON objects are skipped, the latter with a warning.
    """
    bad = 0
    with open(path, "rb") as handle:
        offset = 0
        for line in handle:
            start, offset = offset, offset + len(line)
            if not line.endswith(b"\n"):
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(record, dict) and "input" in record and "status" in record:
                yield start, record
            else:
                bad += 1
    if bad:
        LOG.warning("%s: skipped %d damaged line(s)", path, bad)


def load_state(output_dir: str | Path, run: str) -> dict[str, bool]:
    """What run ``run`` did so far: input key -> True (ok) or False (failed).

    Every results file of the folder counts, whatever shard wrote it, so a
    rerun with another number of tasks still skips finished inputs; records
    of other runs never count.  An ok record whose output file has gone
    missing counts as not done.
    """
    state: dict[str, bool] = {}
    base = Path(output_dir)
    for path in results_files(base):
        for _, record in read_records(path):
            if record.get("run") != run:
                continue
            key = record["input"]
            ok = record["status"] == "ok"
            if ok and record.get("output_file"):
                ok = (base / record["output_file"]).is_file()
                if not ok:
                    continue
            if ok or key not in state:
                state[key] = ok or state.get(key, False)
    return state


def write_json_atomically(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON, never leaving a partial file."""
    tmp = path.with_name(f".{path.name}.{os.uname().nodename}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
