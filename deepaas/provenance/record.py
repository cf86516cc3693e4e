"""A provenance record: one W3C PROV-JSON document per activity.

An activity is a training, a predict job, a batch run or one prediction.
Its record names what it used (the model's installed package, the
arguments, each input, with a SHA-256 of each), what it generated (each
output, with its SHA-256), who ran it (deepaas, as a software agent, at its
version), when, where (host, devices) and how it ended.  The shape, in
PROV terms (docs/provenance.md shows a whole document)::

    activity  deepaas:<kind>/<id>          prov:startTime, prov:endTime,
                                            deepaas:outcome, host, devices
    agent     deepaas:software/<version>   prov:SoftwareAgent
    entity    deepaas:model/<name>         package, version, files digest
    entity    deepaas:<kind>/<id>/arguments  the arguments as JSON
    entity    deepaas:<kind>/<id>/input/<n>  name, path, sha256, size
    entity    deepaas:<kind>/<id>/output/<n> name, path, sha256, size
    used, wasGeneratedBy, wasAssociatedWith (plan: the model)

Every value is a plain PROV-JSON attribute (strings and numbers), so any
PROV reader (the ``prov`` Python package, ProvToolbox, ...) loads it, and
a reader that knows nothing of PROV still finds everything with
:func:`record_summary`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from deepaas.provenance.digests import sha256_bytes
from deepaas.provenance.environment import (
    Host,
    ModelPackage,
    deepaas_version,
    this_host,
    visible_devices,
)

#: The namespace of deepaas's own PROV types and attributes.
NAMESPACE = "urn:deepaas:provenance:"
PREFIXES = {"deepaas": NAMESPACE, "xsd": "http://www.w3.org/2001/XMLSchema#"}

#: Kinds of activity, and their PROV types.
KINDS = {
    "training": "deepaas:Training",
    "job": "deepaas:PredictJob",
    "batch": "deepaas:BatchRun",
    "prediction": "deepaas:Prediction",
}

#: How PROV-JSON writes a value that is a qualified name (a PROV type).
_QNAME = "prov:QUALIFIED_NAME"

#: Records with up to this many entities are written indented.
_INDENT_UP_TO = 1000

#: Outcomes a record may state.
OUTCOMES = ("running", "done", "partial", "error", "cancelled")


@dataclasses.dataclass(frozen=True)
class Artifact:
    """One input or output of an activity, as its digest identifies it.

    ``name`` is how the user knows it (a file name, a path relative to the
    inputs' folder, an argument name); ``path`` is where it was read or
    written (absolute), for :mod:`deepaas.provenance.verify` to read again.
    """

    name: str
    sha256: str
    size: int | None = None
    path: str | None = None
    #: For one line of a text file (a JSON Lines input): its number, from 1.
    line: int | None = None


def timestamp(moment: float | datetime.datetime | None = None) -> str:
    """ISO 8601 time with offset (UTC), as PROV's ``xsd:dateTime`` wants it."""
    if moment is None:
        moment = datetime.datetime.now(datetime.timezone.utc)
    elif not isinstance(moment, datetime.datetime):
        moment = datetime.datetime.fromtimestamp(moment, datetime.timezone.utc)
    elif moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.isoformat()


def canonical_json(value: Any) -> str:
    """``value`` as compact JSON with sorted keys (non-JSON values as text)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


def build_record(
    *,
    kind: str,
    activity_id: str,
    model: ModelPackage,
    arguments: Mapping[str, Any],
    inputs: Iterable[Artifact] = (),
    outputs: Iterable[Artifact] = (),
    started: float | datetime.datetime,
    ended: float | datetime.datetime | None,
    outcome: str,
    message: str | None = None,
    host: Host | None = None,
    devices: Sequence[str] | None = None,
    extra: Mapping[str, str | int | float | bool] | None = None,
) -> dict[str, Any]:
    """The PROV-JSON document of one activity (see the module docstring).

    ``kind`` is one of :data:`KINDS`, ``outcome`` one of :data:`OUTCOMES`
    (``ended`` None with outcome ``"running"``).  ``arguments`` are stored as
    canonical JSON (values that JSON cannot hold, as their text).  ``host``
    and ``devices`` default to this process's (:func:`this_host`,
    :func:`visible_devices`).  ``extra`` adds ``deepaas:<key>`` attributes to
    the activity (e.g. a batch's ``run`` id).  Raises :class:`ValueError`
    for an unknown kind or outcome.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)} (got {kind!r})")
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {list(OUTCOMES)} (got {outcome!r})")
    host = host or this_host()
    activity = f"deepaas:{kind}/{activity_id}"
    agent = f"deepaas:software/{deepaas_version()}"
    model_id = f"deepaas:model/{model.name}"
    args_id = f"{activity}/arguments"
    args_json = canonical_json(dict(arguments))
    attributes: dict[str, Any] = {
        "prov:type": _qualified(KINDS[kind]),
        "prov:startTime": timestamp(started),
        "deepaas:outcome": outcome,
        "deepaas:host": host.hostname,
        "deepaas:platform": host.platform,
        "deepaas:python": host.python,
        "deepaas:devices": ",".join(visible_devices() if devices is None else devices),
    }
    if ended is not None:
        attributes["prov:endTime"] = timestamp(ended)
    if message:
        attributes["deepaas:message"] = message
    if host.slurm_job:
        attributes["deepaas:slurmJob"] = host.slurm_job
    for key, value in (extra or {}).items():
        attributes[f"deepaas:{key}"] = value
    entities: dict[str, Any] = {
        model_id: _drop_none(
            {
                "prov:type": _qualified("deepaas:Model"),
                "prov:label": model.name,
                "deepaas:entryPoint": model.entry_point,
                "deepaas:package": model.package,
                "deepaas:packageVersion": model.package_version,
                "deepaas:packageFilesSha256": model.files_sha256,
                "deepaas:modelVersion": model.model_version,
            }
        ),
        args_id: {
            "prov:type": _qualified("deepaas:Arguments"),
            "prov:value": args_json,
            "deepaas:sha256": sha256_bytes(args_json.encode()),
        },
    }
    used: dict[str, Any] = {
        "_:model": {"prov:activity": activity, "prov:entity": model_id},
        "_:arguments": {"prov:activity": activity, "prov:entity": args_id},
    }
    generated: dict[str, Any] = {}
    for number, item in enumerate(inputs):
        key = f"{activity}/input/{number}"
        entities[key] = _artifact("deepaas:Input", item)
        used[f"_:u{number}"] = {"prov:activity": activity, "prov:entity": key}
    for number, item in enumerate(outputs):
        key = f"{activity}/output/{number}"
        entities[key] = _artifact("deepaas:Output", item)
        generated[f"_:g{number}"] = {"prov:entity": key, "prov:activity": activity}
    document: dict[str, Any] = {
        "prefix": dict(PREFIXES),
        "entity": entities,
        "activity": {activity: attributes},
        "agent": {
            agent: {
                "prov:type": _qualified("prov:SoftwareAgent"),
                "prov:label": "deepaas",
                "deepaas:version": deepaas_version(),
            }
        },
        "used": used,
        "wasAssociatedWith": {
            "_:assoc": {
                "prov:activity": activity,
                "prov:agent": agent,
                "prov:plan": model_id,
            }
        },
    }
    if generated:
        document["wasGeneratedBy"] = generated
    return document


def _artifact(prov_type: str, item: Artifact) -> dict[str, Any]:
    return _drop_none(
        {
            "prov:type": _qualified(prov_type),
            "prov:label": item.name,
            "deepaas:sha256": item.sha256,
            "deepaas:size": item.size,
            "deepaas:path": item.path,
            "deepaas:line": item.line,
        }
    )


def _qualified(name: str) -> dict[str, str]:
    return {"$": name, "type": _QNAME}


def _type_of(attributes: Mapping[str, Any]) -> str | None:
    value = attributes.get("prov:type")
    return value.get("$") if isinstance(value, dict) else value


def _drop_none(attributes: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in attributes.items() if value is not None}


def write_record(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Write ``record`` to ``path`` atomically (a temporary file, then a rename).

    A reader never sees half a record, even when the writer is killed.  A
    small record is indented for people; a large one (a batch of thousands
    of inputs) is written compactly, by json's C encoder, several times
    faster and a third smaller.
    """
    target = Path(path)
    large = len(record.get("entity") or ()) > _INDENT_UP_TO
    handle, partial = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".part", dir=target.parent
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            if large:
                json.dump(record, out, ensure_ascii=False, separators=(",", ":"))
            else:
                json.dump(record, out, indent=1, ensure_ascii=False)
            out.write("\n")
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The record at ``path``; :class:`ValueError` naming it when it is not one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path} is not a JSON provenance record: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("activity"), dict):
        raise ValueError(f"{path} is not a PROV-JSON provenance record")
    return data


def artifacts(record: Mapping[str, Any], role: str = "Input") -> list[Artifact]:
    """The inputs (``role="Input"``) or outputs (``"Output"``) a record lists."""
    found = []
    for attributes in (record.get("entity") or {}).values():
        if _type_of(attributes) != f"deepaas:{role}":
            continue
        size = attributes.get("deepaas:size")
        line = attributes.get("deepaas:line")
        found.append(
            Artifact(
                name=str(attributes.get("prov:label", "")),
                sha256=str(attributes.get("deepaas:sha256", "")),
                size=size if isinstance(size, int) else None,
                path=attributes.get("deepaas:path"),
                line=line if isinstance(line, int) else None,
            )
        )
    return found


def record_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """The activity's attributes without the ``prov:``/``deepaas:`` prefixes."""
    ((_, attributes),) = record["activity"].items()
    return {
        key.split(":", 1)[1]: value.get("$") if isinstance(value, dict) else value
        for key, value in attributes.items()
    }


__all__ = [
    "KINDS",
    "NAMESPACE",
    "OUTCOMES",
    "Artifact",
    "artifacts",
    "build_record",
    "canonical_json",
    "read_record",
    "record_summary",
    "timestamp",
    "write_record",
]
