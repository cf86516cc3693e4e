"""A JSON Lines log of provenance records, one per answered prediction.

``deepaas-run --provenance-log PATH`` records every answered predict call.
A server answers thousands of echo predictions a second, so a record costs
a few microseconds on the event loop: the line is filled into a string
template (the digests of the arguments and of a small answer, two
timestamps formatted from a cached second) and queued; a thread wakes a
few times a second and appends every queued line with one write.  Work in
that thread is kept to the write (and the digest of a large answer, which
hashlib computes without the interpreter lock): a second busy Python
thread would take the lock each time the loop makes a system call, which
measured costlier than the formatting itself.  Uploaded files are hashed
(in a thread) before the model's call, since the model may change them
and the server removes them after it.

The file holds PROV-JSON documents, one per line.  The first line a server
writes describes the server (deepaas's version, the host, the devices) as
an agent and each served model as an entity (package, version, digest of
its installed files); every prediction's line refers to those by id, so
that a line stays small (about 1 KiB) and is still a PROV-JSON document of
its own.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import itertools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from hashlib import sha256
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepaas.provenance.digests import sha256_file
from deepaas.provenance.environment import (
    ModelPackage,
    deepaas_version,
    this_host,
    visible_devices,
)
from deepaas.provenance.record import PREFIXES

_quote = encode_basestring_ascii

if TYPE_CHECKING:
    from deepaas.model.wrapper import PredictOutcome, RawArguments

LOG = logging.getLogger(__name__)

_now = time.time

#: Seconds between two writes of the records gathered meanwhile.
FLUSH_SECONDS = 0.25
#: Answers up to this size are hashed on the event loop (about 1 us).
INLINE_BYTES = 64 * 1024

_UTC = datetime.timezone.utc
_Q = '{"$":"deepaas:%s","type":"prov:QUALIFIED_NAME"}'
_PREFIX = json.dumps(PREFIXES, separators=(",", ":"))
# One prediction's document; filled by PredictionLog._line, in this order:
# activity, start, end, activity (arguments), arguments, their digest,
# activity (output), its digest, size, media type, input entities,
# activity + model (used), activity x2 (used arguments), used inputs,
# activity x2 (generated), activity + server + model (associated).
_LINE = (
    '{"prefix":' + _PREFIX + ',"activity":{"%s":{'
    '"prov:type":' + _Q % "Prediction" + ","
    '"prov:startTime":"%s","prov:endTime":"%s","deepaas:outcome":"done"}},'
    '"entity":{"%s/arguments":{"prov:type":' + _Q % "Arguments" + ","
    '"prov:value":%s,"deepaas:sha256":"%s"},'
    '"%s/output/0":{"prov:type":' + _Q % "Output" + ","
    '"prov:label":"answer","deepaas:sha256":"%s","deepaas:size":%d,'
    '"deepaas:mediaType":%s}%s},'
    '"used":{"_:m":{"prov:activity":"%s","prov:entity":"deepaas:model/%s"},'
    '"_:a":{"prov:activity":"%s","prov:entity":"%s/arguments"}%s},'
    '"wasGeneratedBy":{"_:g":{"prov:entity":"%s/output/0","prov:activity":"%s"}},'
    '"wasAssociatedWith":{"_:w":{"prov:activity":"%s",'
    '"prov:agent":"deepaas:server/%s","prov:plan":"deepaas:model/%s"}}}\n'
)
#: Canonical JSON of the arguments: one encoder (json.dumps with options
#: builds a new one per call).
_ARGS_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
)


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
        self.server_id = uuid.uuid4().hex[:12]
        self._flush_seconds = flush_seconds
        self._devices = devices
        #: Formatted lines, or what a large answer's line is made from.
        self._pending: collections.deque[str | tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._count = itertools.count()
        self._clock = _Clock()

    def open(self, models: Iterable[ModelPackage]) -> None:
        """Write the server's line (models, host, devices) and start writing.

        Raises :class:`OSError` naming the file when it cannot be appended to.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(self._server_document(list(models))) + "\n")
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

    async def begin(self, raw: RawArguments) -> tuple[float, list[tuple[str, str]]]:
        """Before the model's call: the start time and each upload's digest."""
        start = _now()
        if not raw.pairs:
            return start, []
        uploads = [(name, value) for name, value in raw.pairs if _is_upload(value)]
        if not uploads:
            return start, []
        digests = await asyncio.to_thread(
            lambda: [(name, sha256_file(up.filename)) for name, up in uploads]
        )
        return start, digests

    def record(
        self,
        model: str,
        begun: tuple[float, list[tuple[str, str]]],
        raw: RawArguments,
        outcome: PredictOutcome,
    ) -> None:
        """Note the record of one answered call; written to the file later.

        A small answer's record is formatted here, on the event loop (a few
        microseconds): formatting it in the writer thread would cost more,
        since two busy threads hand the interpreter lock back and forth at
        every system call of the loop.  A large answer is hashed in the
        writer thread, which holds the lock only briefly: hashlib releases
        it while it hashes.
        """
        end = _now()
        if len(outcome.body) <= INLINE_BYTES:
            self._pending.append(self._line(model, begun, end, raw, outcome))
        else:
            self._pending.append((model, begun, end, raw, outcome))

    def close(self) -> None:
        """Write every queued record and stop the writer thread."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        else:
            self._flush()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self._flush_seconds)
            try:
                self._flush()
            except Exception:  # a full disk must not kill the writer silently
                LOG.exception("cannot append provenance records to %s", self.path)
        self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        lines = []
        pop = self._pending.popleft
        for _ in range(len(self._pending)):
            item = pop()
            lines.append(item if isinstance(item, str) else self._line(*item))
        with open(self.path, "a", encoding="utf-8") as out:
            out.write("".join(lines))

    def _line(
        self,
        model: str,
        begun: tuple[float, list[tuple[str, str]]],
        end: float,
        raw: RawArguments,
        outcome: PredictOutcome,
    ) -> str:
        start, uploads = begun
        if raw.pairs:
            pairs = [
                [name, value if isinstance(value, str) else _upload_name(value)]
                for name, value in raw.pairs
            ]
            arguments: Any = pairs if raw.json_body is None else [pairs, raw.json_body]
        else:
            arguments = raw.json_body
        args = _ARGS_ENCODER.encode(arguments)
        activity = f"deepaas:prediction/{self.server_id}-{next(self._count)}"
        inputs = used = ""
        for number, (name, digest) in enumerate(uploads):
            key = f"{activity}/input/{number}"
            inputs += (
                f',"{key}":{{"prov:type":{_Q % "Input"},'
                f'"prov:label":{_quote(name)},"deepaas:sha256":"{digest}"}}'
            )
            used += (
                f',"_:i{number}":{{"prov:activity":"{activity}","prov:entity":"{key}"}}'
            )
        body = outcome.body
        return _LINE % (
            activity,
            self._clock.iso(start),
            self._clock.iso(end),
            activity,
            _quote(args),
            sha256(args.encode()).hexdigest(),
            activity,
            sha256(body).hexdigest(),
            len(body),
            _quote(outcome.content_type),
            inputs,
            activity,
            model,
            activity,
            activity,
            used,
            activity,
            activity,
            activity,
            self.server_id,
            model,
        )


class _Clock:
    """ISO 8601 UTC times, each whole second formatted once (a record has two)."""

    def __init__(self) -> None:
        # One attribute, replaced whole: the loop and the writer thread use it.
        self._last = (-1, "")

    def iso(self, moment: float) -> str:
        whole = int(moment)
        second, text = self._last
        if whole != second:
            stamp = datetime.datetime.fromtimestamp(whole, _UTC)
            text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
            self._last = (whole, text)
        return f"{text}.{int((moment - whole) * 1e6):06d}+00:00"


def _is_upload(value: Any) -> bool:
    return not isinstance(value, str) and hasattr(value, "filename")


def _upload_name(value: Any) -> str:
    return str(getattr(value, "original_filename", None) or "file")


__all__ = ["FLUSH_SECONDS", "PredictionLog"]
