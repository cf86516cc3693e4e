"""``provenance.json``: the batch run's provenance record, beside ``run.json``.

Each input's record in a results file carries the SHA-256 of the input
(computed by the worker from the input's copy, before the model's call:
no second pass over the inputs), of its other files (fixed ``--arg``
files) and of the answer.  When a task ends, the run's record is rebuilt
from every results file of the folder (the best record of each input, as
merge picks it); ``deepaas-predict merge`` rebuilds it from the merged
results and states the final outcome.  The document is W3C PROV-JSON
(:mod:`deepaas.provenance`, docs/provenance.md).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from deepaas.batch.inputs import InputItem
from deepaas.batch.results import (
    MERGED_FILE,
    read_records,
    results_files,
)
from deepaas.batch.runfile import read_run_file
from deepaas.model.loading import ModelSpec, available_models
from deepaas.model.wrapper import PredictOutcome
from deepaas.provenance import (
    RECORD_FILE,
    Artifact,
    ModelPackage,
    build_record,
    model_package,
    read_record,
    sha256_bytes,
    this_host,
    verify_record,
    visible_devices,
    write_record,
)

LOG = logging.getLogger("deepaas.predict")

#: The run's provenance record, in the output folder.
PROVENANCE_FILE = RECORD_FILE


def input_digests(
    item: InputItem, found: Mapping[str, Any] | None, outcome: Any
) -> dict[str, Any]:
    """The ``sha256`` of an input's record: ``input``, ``files``, ``output``.

    ``found`` is what the worker computed (the digests of the input's
    copies, by original path, and of the answer); a JSON Lines input's
    digest is that of its line, computed here.
    """
    files = dict((found or {}).get("files") or {})
    digests: dict[str, Any] = {}
    if item.text is not None:
        digests["input"] = sha256_bytes(item.text.encode())
    elif item.path in files:
        digests["input"] = files.pop(item.path)
    if files:
        digests["files"] = files
    output = (found or {}).get("output")
    if output is None and isinstance(outcome, PredictOutcome):
        output = sha256_bytes(outcome.body)
    if output is not None:
        digests["output"] = output
    return digests


def devices_of(worker_envs: Iterable[Mapping[str, str]] | None) -> list[str]:
    """The devices of the workers (their environments), or of this process."""
    found: list[str] = []
    for env in worker_envs or ():
        if "CUDA_VISIBLE_DEVICES" not in env:
            continue
        for device in visible_devices(env):
            if device not in found:
                found.append(device)
    return found or visible_devices()


def write_run_record(
    output_dir: Path,
    *,
    spec: ModelSpec | None = None,
    merged: bool = False,
    started: float | None = None,
    devices: list[str] | None = None,
) -> Path | None:
    """Rebuild ``output_dir/provenance.json`` from the run's records.

    Without ``merged``, every results file counts (the best record of each
    input); with it, ``merged.jsonl`` does, and the outcome is final.
    ``spec`` locates the model's package (else the earlier record's, else
    the installed entry point of the run's model).  Returns the path, or
    None when the folder holds no run.
    """
    run = read_run_file(output_dir)
    if not run or "run" not in run:
        return None
    path = output_dir / PROVENANCE_FILE
    earlier = _earlier(path, run["run"])
    records = _merged(output_dir) if merged else _best(output_dir, str(run["run"]))
    inputs: list[Artifact] = []
    outputs: list[Artifact] = []
    shared: dict[str, str] = {}
    ok = failed = 0
    first: float | None = None
    last: float | None = None
    jsonl = (run.get("inputs") or {}).get("kind") == "jsonl"
    for key, record in records:
        digests = record.get("sha256") or {}
        if record.get("status") == "ok":
            ok += 1
        else:
            failed += 1
        finished = _time(record.get("finished"))
        if finished is not None:
            begun = finished - float(record.get("seconds") or 0)
            first = begun if first is None else min(first, begun)
            last = finished if last is None else max(last, finished)
        if "input" in digests:
            inputs.append(_input(key, digests["input"], jsonl))
        shared.update(digests.get("files") or {})
        if "output" in digests:
            outputs.append(
                Artifact(
                    name=record.get("output_file") or f"answer to {key}",
                    sha256=digests["output"],
                    path=record.get("output_file"),
                )
            )
    inputs += [Artifact(name=p, sha256=h, path=p) for p, h in sorted(shared.items())]
    total = int(run.get("count") or (ok + failed))
    missing = max(0, total - ok - failed)
    if ok == total:
        outcome = "done"
    elif ok:
        outcome = "partial"
    else:
        outcome = "error"
    host = this_host()
    hosts = _merge_list((earlier or {}).get("deepaas:hosts"), host.hostname)
    recorded_devices = (earlier or {}).get("deepaas:devices")
    if devices is None and recorded_devices:
        devices = str(recorded_devices).split(",")
    else:
        devices = _merge_list(recorded_devices, *(devices or visible_devices())).split(
            ","
        )
    record = build_record(
        kind="batch",
        activity_id=str(run["run"]),
        model=_model(run, spec, path),
        arguments={
            "args": run.get("args"),
            "accept": run.get("accept"),
            "file_arg": run.get("file_arg"),
        },
        inputs=inputs,
        outputs=outputs,
        started=_earliest(first, started, earlier),
        ended=last
        if last is not None
        else datetime.datetime.now(datetime.timezone.utc),
        outcome=outcome,
        message=f"{total} inputs: {ok} ok, {failed} failed, {missing} not done",
        host=host,
        devices=devices,
        extra={
            "run": str(run["run"]),
            "inputs": total,
            "ok": ok,
            "failed": failed,
            "missing": missing,
            "merged": merged,
            "hosts": hosts,
        },
    )
    write_record(path, record)
    return path


def _input(key: str, digest: str, jsonl: bool) -> Artifact:
    if jsonl:
        path, _, line = key.rpartition(":")
        if line.isdigit():
            return Artifact(name=key, sha256=digest, path=path, line=int(line))
    return Artifact(name=key, sha256=digest, path=key)


def _best(output_dir: Path, run: str) -> list[tuple[str, dict[str, Any]]]:
    """Each input's best record of ``run`` (ok over error, then the latest)."""
    best: dict[str, tuple[tuple[bool, str], dict[str, Any]]] = {}
    for results in results_files(output_dir):
        for _, record in read_records(results):
            if record.get("run") != run:
                continue
            rank = (record["status"] == "ok", str(record.get("finished", "")))
            key = record["input"]
            if key not in best or rank >= best[key][0]:
                best[key] = (rank, _kept(record))
    return sorted((key, record) for key, (_, record) in best.items())


def _merged(output_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    return [
        (record["input"], _kept(record))
        for _, record in read_records(output_dir / MERGED_FILE)
    ]


#: What the record needs of each input's results record (not its answer:
#: 100,000 answers need not be held at once).
_KEPT = ("status", "finished", "seconds", "sha256", "output_file")


def _kept(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record[key] for key in _KEPT if key in record}


def _time(text: Any) -> float | None:
    try:
        return datetime.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def _earlier(path: Path, run: Any) -> dict[str, Any] | None:
    """The activity of the record already there, when it is of this run."""
    if not path.exists():
        return None
    try:
        record = read_record(path)
    except (OSError, ValueError) as exc:
        LOG.warning("replacing an unreadable provenance record: %s", exc)
        return None
    for attributes in record["activity"].values():
        if attributes.get("deepaas:run") == str(run):
            return dict(attributes)
    return None


def _earliest(
    first: float | None, started: float | None, earlier: Mapping[str, Any] | None
) -> float:
    times = [t for t in (first, started) if t is not None]
    if earlier:
        recorded = _time(earlier.get("prov:startTime"))
        if recorded is not None:
            times.append(recorded)
    return (
        min(times)
        if times
        else datetime.datetime.now(datetime.timezone.utc).timestamp()
    )


def _merge_list(recorded: Any, *more: str) -> str:
    names = [n for n in str(recorded or "").split(",") if n]
    names += [n for n in more if n and n not in names]
    return ",".join(names)


def _model(run: Mapping[str, Any], spec: ModelSpec | None, path: Path) -> ModelPackage:
    name = str(run.get("model"))
    version = run.get("version")
    if spec is not None and spec.name == name:
        return model_package(
            name, spec.target, namespace=spec.namespace, model_version=version
        )
    earlier = _earlier_model(path, name)
    if earlier is not None:
        return earlier
    found = available_models().get(name)
    if found is not None:
        return model_package(
            name, found.target, namespace=found.namespace, model_version=version
        )
    return ModelPackage(name=name, entry_point=name, model_version=version)


def _earlier_model(path: Path, name: str) -> ModelPackage | None:
    try:
        record = read_record(path)
    except (OSError, ValueError):
        return None
    attributes = (record.get("entity") or {}).get(f"deepaas:model/{name}")
    if not attributes:
        return None
    return ModelPackage(
        name=name,
        entry_point=str(attributes.get("deepaas:entryPoint") or name),
        package=attributes.get("deepaas:package"),
        package_version=attributes.get("deepaas:packageVersion"),
        files_sha256=attributes.get("deepaas:packageFilesSha256"),
        model_version=attributes.get("deepaas:modelVersion"),
    )


def verify_run(output_dir: Path) -> list[str]:
    """One line per input (or output file) of the folder's run that changed."""
    path = output_dir / PROVENANCE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: run deepaas-predict into this folder first"
        )
    return verify_record(read_record(path), base=output_dir)


__all__ = [
    "PROVENANCE_FILE",
    "devices_of",
    "input_digests",
    "verify_run",
    "write_run_record",
]
