"""A JSON Lines log of provenance records, one per answered prediction.

``deepaas-run --provenance-log PATH`` records every answered predict call.
A server answers thousands of echo predictions a second, so the request
path only notes the times and keeps references to the arguments and the
answer (one ``deque.append``).  A thread sends what was noted, a few times
a second, to a child process (:mod:`deepaas.provenance._log_writer`) that
formats the records and appends them.  Formatting a record is a few
microseconds of Python; measured on the echo model, doing it in the
server's own process (on the event loop, or in a thread of it, which then
takes the interpreter lock at each of the loop's system calls) cost 15-20%
of the throughput, while the hand-over costs a pickle per batch.  Uploaded
files are hashed (in a thread) before the model's call, since the model
may change them and the server removes them after it; answers over 64 KiB
are hashed by the thread (hashlib releases the interpreter lock) and only
their digest goes to the child.

The file holds PROV-JSON documents, one per line.  The first line a server
writes describes the server (deepaas's version, the host, the devices) as
an agent and each served model as an entity (package, version, digest of
its installed files); every prediction's line refers to those by id, so
that a line stays small (about 1.3 KiB) and is still a PROV-JSON document
of its own.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from hashlib import sha256
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from deepaas.provenance import _log_writer
from deepaas.provenance._log_writer import canonical_json
from deepaas.provenance.digests import sha256_file
from deepaas.provenance.environment import (
    ModelPackage,
    deepaas_version,
    this_host,
    visible_devices,
)
from deepaas.provenance.record import PREFIXES

if TYPE_CHECKING:
    from deepaas.model.wrapper import PredictOutcome, RawArguments

LOG = logging.getLogger(__name__)

_now = time.time

#: Seconds between two writes of the records gathered meanwhile.
FLUSH_SECONDS = 0.25
#: Answers larger than this are hashed by the server's writer thread; the
#: smaller ones go to the child process, which hashes them.
INLINE_BYTES = 64 * 1024
#: Seconds the child process gets to write what it was sent, at close.
CLOSE_SECONDS = 30.0

_UTC = datetime.timezone.utc


class PredictionLog:
    """Appends one PROV-JSON record per prediction to a JSON Lines file.

    Call :meth:`open` once the models are known, :meth:`begin` before the
    model's call and :meth:`record` after its answer, :meth:`close` at
    shutdown (it writes what is left).  ``record`` never blocks on the file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flush_seconds: float = FLUSH_SECONDS,
        devices: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.server_id = uuid.uuid4().hex[:8]
        self._flush_seconds = flush_seconds
        self._devices = devices
        #: What each answer's record is made of, until the thread sends it.
        self._pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._broken = False

    def open(self, models: Iterable[ModelPackage]) -> None:
        """Write the server's line (models, host, devices) and start writing.

        Raises :class:`OSError` naming the file when it cannot be appended to.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(self._server_document(list(models))) + "\n")
        # Standard library only: -I (no environment, no user site) and -S
        # (no site-packages) make it start in milliseconds.
        self._child = subprocess.Popen(  # noqa: S603 - our interpreter, our file
            [sys.executable, "-I", "-S", _log_writer.__file__, str(self.path),
             self.server_id],
            stdin=subprocess.PIPE,
        )  # fmt: skip
        self._thread = threading.Thread(
            target=self._run, name="deepaas-provenance-log", daemon=True
        )
        self._thread.start()

    def _server_document(self, models: list[ModelPackage]) -> dict[str, Any]:
        host = this_host()
        devices = visible_devices() if self._devices is None else self._devices
        agent: dict[str, Any] = {
            "prov:type": {"$": "prov:SoftwareAgent", "type": "prov:QUALIFIED_NAME"},
            "prov:label": "deepaas-run",
            "deepaas:version": deepaas_version(),
            "deepaas:host": host.hostname,
            "deepaas:platform": host.platform,
            "deepaas:python": host.python,
            "deepaas:devices": ",".join(devices),
            "deepaas:started": datetime.datetime.now(_UTC).isoformat(),
        }
        if host.slurm_job:
            agent["deepaas:slurmJob"] = host.slurm_job
        entities = {
            f"deepaas:model/{model.name}": {
                key: value
                for key, value in {
                    "prov:type": {"$": "deepaas:Model", "type": "prov:QUALIFIED_NAME"},
                    "prov:label": model.name,
                    "deepaas:entryPoint": model.entry_point,
                    "deepaas:package": model.package,
                    "deepaas:packageVersion": model.package_version,
                    "deepaas:packageFilesSha256": model.files_sha256,
                    "deepaas:modelVersion": model.model_version,
                }.items()
                if value is not None
            }
            for model in models
        }
        return {
            "prefix": dict(PREFIXES),
            "agent": {f"deepaas:server/{self.server_id}": agent},
            "entity": entities,
        }

    async def begin(
        self, raw: RawArguments
    ) -> tuple[float, tuple[tuple[str, str], ...]]:
        """Before the model's call: the start time and each upload's digest."""
        start = _now()
        if not raw.pairs:
            return start, ()
        uploads = [(name, value) for name, value in raw.pairs if _is_upload(value)]
        if not uploads:
            return start, ()
        digests = await asyncio.to_thread(
            lambda: tuple((name, sha256_file(up.filename)) for name, up in uploads)
        )
        return start, digests

    def record(
        self,
        model: str,
        begun: tuple[float, tuple[tuple[str, str], ...]],
        raw: RawArguments,
        outcome: PredictOutcome,
    ) -> None:
        """Note the record of one answered call (written later).

        Only plain values are kept (the arguments as their canonical JSON):
        holding the request's objects until the next write would give the
        garbage collector thousands more containers to walk.
        """
        arguments: Any = raw.json_body
        if raw.pairs:
            pairs = [
                [name, value if isinstance(value, str) else _upload_name(value)]
                for name, value in raw.pairs
            ]
            arguments = pairs if arguments is None else [pairs, arguments]
        start, uploads = begun
        self._pending.append(
            (model, start, _now(), canonical_json(arguments), outcome.body,
             outcome.content_type, uploads or None)
        )  # fmt: skip

    def close(self) -> None:
        """Write every queued record; stop the writer thread and the child."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        child, self._child = self._child, None
        if child is None:
            return
        assert child.stdin is not None
        try:
            child.stdin.close()  # the end of its input: it writes, then exits
        except OSError:
            pass
        try:
            child.wait(CLOSE_SECONDS)
        except subprocess.TimeoutExpired:
            LOG.error("the provenance log writer did not finish in %g s; "
                      "stopped", CLOSE_SECONDS)  # fmt: skip
            child.kill()
            child.wait()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self._flush_seconds)
            try:
                self._flush()
            except Exception:  # a full disk must not kill the writer silently
                LOG.exception("cannot append provenance records to %s", self.path)
        self._flush()

    def _flush(self) -> None:
        if not self._pending or self._child is None or self._broken:
            self._pending.clear()
            return
        batch = []
        pop = self._pending.popleft
        for _ in range(len(self._pending)):
            item = pop()
            answer = item[4]
            if len(answer) > INLINE_BYTES:
                digest = (sha256(answer).hexdigest(), len(answer))
                item = (*item[:4], digest, *item[5:])
            batch.append(item)
        stdin: IO[bytes] | None = self._child.stdin
        assert stdin is not None
        try:
            stdin.write(_log_writer.frame(batch))
            stdin.flush()
        except OSError as exc:
            self._broken = True
            LOG.error(
                "the provenance log writer stopped (%s); no more records are "
                "written to %s", exc, self.path,
            )  # fmt: skip


def _is_upload(value: Any) -> bool:
    return not isinstance(value, str) and hasattr(value, "filename")


def _upload_name(value: Any) -> str:
    return str(getattr(value, "original_filename", None) or "file")


__all__ = ["FLUSH_SECONDS", "PredictionLog"]
