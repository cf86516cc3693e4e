"""A JSON Lines log of provenance records, one per prediction, written off the loop.

``deepaas-run --provenance-log PATH`` records every answered predict call.
A server answers ~10,000 echo predictions a second, so the request path
does almost nothing: it notes the times and keeps references to the
arguments and the answer (one ``deque.append``); a thread wakes a few
times a second, hashes the answers, formats the records from string
templates and appends them to the file in one write.  Uploaded files are
the exception: they are hashed (in a thread) before the model's call,
since the model may change them and the server removes them after it.

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
import hashlib
import itertools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
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

if TYPE_CHECKING:
    from deepaas.model.wrapper import PredictOutcome, RawArguments

LOG = logging.getLogger(__name__)

_now = time.time

#: Seconds between two writes of the records gathered meanwhile.
FLUSH_SECONDS = 0.25

_UTC = datetime.timezone.utc
_Q = '{"$":"deepaas:%s","type":"prov:QUALIFIED_NAME"}'
_PREFIX = json.dumps(PREFIXES, separators=(",", ":"))
# One prediction's document; %-fields filled by _Writer._line.
_LINE = (
    '{"prefix":' + _PREFIX + ',"activity":{"deepaas:prediction/%(id)s":{'
    '"prov:type":' + _Q % "Prediction" + ","
    '"prov:startTime":"%(start)s","prov:endTime":"%(end)s",'
    '"deepaas:outcome":"done"}},'
    '"entity":{"deepaas:prediction/%(id)s/arguments":{'
    '"prov:type":' + _Q % "Arguments" + ',"prov:value":%(args)s,'
    '"deepaas:sha256":"%(args_sha)s"},'
    '"deepaas:prediction/%(id)s/output/0":{"prov:type":' + _Q % "Output" + ","
    '"prov:label":"answer","deepaas:sha256":"%(out_sha)s","deepaas:size":%(size)d,'
    '"deepaas:mediaType":%(media)s}%(inputs)s},'
    '"used":{"_:m":{"prov:activity":"deepaas:prediction/%(id)s",'
    '"prov:entity":"deepaas:model/%(model)s"},'
    '"_:a":{"prov:activity":"deepaas:prediction/%(id)s",'
    '"prov:entity":"deepaas:prediction/%(id)s/arguments"}%(used)s},'
    '"wasGeneratedBy":{"_:g":{"prov:entity":"deepaas:prediction/%(id)s/output/0",'
    '"prov:activity":"deepaas:prediction/%(id)s"}},'
    '"wasAssociatedWith":{"_:w":{"prov:activity":"deepaas:prediction/%(id)s",'
    '"prov:agent":"deepaas:server/%(server)s","prov:plan":"deepaas:model/%(model)s"}}}'
    "\n"
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
        self._pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._count = itertools.count()

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
        """Queue the record of one answered call (cheap: no hashing here)."""
        self._pending.append((model, begun, _now(), raw, outcome))

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
            lines.append(self._line(*pop()))
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
        arguments: Any = [
            [name, value if isinstance(value, str) else _upload_name(value)]
            for name, value in raw.pairs
        ]
        if raw.json_body is not None:
            arguments = raw.json_body if not arguments else [arguments, raw.json_body]
        args = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
        activity = f"{self.server_id}-{next(self._count)}"
        inputs = used = ""
        for number, (name, digest) in enumerate(uploads):
            key = f"deepaas:prediction/{activity}/input/{number}"
            inputs += (
                f',"{key}":{{"prov:type":{_Q % "Input"},'
                f'"prov:label":{json.dumps(name)},"deepaas:sha256":"{digest}"}}'
            )
            used += (
                f',"_:i{number}":{{"prov:activity":"deepaas:prediction/{activity}",'
                f'"prov:entity":"{key}"}}'
            )
        return _LINE % {
            "id": activity,
            "start": _iso(start),
            "end": _iso(end),
            "args": json.dumps(args),
            "args_sha": hashlib.sha256(args.encode()).hexdigest(),
            "out_sha": hashlib.sha256(outcome.body).hexdigest(),
            "size": len(outcome.body),
            "media": json.dumps(outcome.content_type),
            "inputs": inputs,
            "used": used,
            "model": model,
            "server": self.server_id,
        }


def _iso(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, _UTC).isoformat()


def _is_upload(value: Any) -> bool:
    return not isinstance(value, str) and hasattr(value, "filename")


def _upload_name(value: Any) -> str:
    return str(getattr(value, "original_filename", None) or "file")


__all__ = ["FLUSH_SECONDS", "PredictionLog"]
