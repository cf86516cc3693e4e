"""The provenance record of a training, kept in the training's own folder.

At submission the uploads are hashed as received (:func:`note_inputs`,
``inputs.sha256.json``), since the training may change them and they are
removed when it ends; at its end :func:`record_training` writes
``provenance.json`` beside the training's log.  Local and SLURM trainings
alike; ``GET /v2/models/<name>/train/<uuid>/provenance`` answers it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from deepaas.model.loading import ModelSpec
from deepaas.provenance.digests import sha256_bytes, sha256_file
from deepaas.provenance.environment import Host, model_package
from deepaas.provenance.record import (
    Artifact,
    build_record,
    canonical_json,
    write_record,
)

LOG = logging.getLogger(__name__)

#: The training's provenance record, in its folder.
RECORD_FILE = "provenance.json"
#: The uploads' digests as received, in its folder.
INPUTS_FILE = "inputs.sha256.json"

#: How a training's status reads as a record's outcome.
_OUTCOMES = {"done": "done", "error": "error", "cancelled": "cancelled"}


class _Arguments(Protocol):
    @property
    def pairs(self) -> list[tuple[str, Any]]: ...


class _Training(Protocol):
    """What a training record gives (deepaas.training.store.Training)."""

    @property
    def uuid(self) -> str: ...
    @property
    def args(self) -> dict[str, Any]: ...
    @property
    def status(self) -> str: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def finished_at(self) -> float | None: ...
    @property
    def output(self) -> Any: ...
    @property
    def message(self) -> str | None: ...


def note_inputs(job_dir: Path, raw: _Arguments) -> None:
    """Keep the SHA-256 of each upload in ``job_dir``, as it was received."""
    found = []
    for name, value in raw.pairs:
        if isinstance(value, str) or not hasattr(value, "filename"):
            continue
        path = Path(value.filename)
        found.append(
            {
                "argument": name,
                "name": value.original_filename or path.name,
                "file": os.path.relpath(path, job_dir),
                "sha256": sha256_file(path),
                "size": path.stat().st_size,
            }
        )
    if found:
        (job_dir / INPUTS_FILE).write_text(json.dumps(found, indent=1) + "\n")


def record_training(
    job_dir: Path,
    training: _Training,
    *,
    spec: ModelSpec,
    host: Host | None = None,
    devices: Sequence[str] | None = None,
    extra: Mapping[str, str | int | float | bool] | None = None,
) -> Path | None:
    """Write ``job_dir/provenance.json`` for a training that has ended.

    Never raises for a disk that refuses it: the training's end is recorded
    in the store either way, so a failure here is logged and None returned.
    """
    inputs = [
        Artifact(
            name=f"{item['argument']}: {item['name']}",
            sha256=item["sha256"],
            size=item.get("size"),
        )
        for item in _noted(job_dir)
    ]
    outputs = []
    if training.status == "done":
        text = canonical_json(training.output)
        outputs.append(
            Artifact("output", sha256_bytes(text.encode()), len(text.encode()))
        )
    finished = training.finished_at
    try:
        record = build_record(
            kind="training",
            activity_id=training.uuid,
            model=model_package(spec.name, spec.target, namespace=spec.namespace),
            arguments=training.args,
            inputs=inputs,
            outputs=outputs,
            started=training.started_at or finished or 0.0,
            ended=finished,
            outcome=_OUTCOMES.get(training.status, "error"),
            message=training.message,
            host=host,
            devices=devices,
            extra=extra,
        )
        path = job_dir / RECORD_FILE
        write_record(path, record)
    except (OSError, ValueError) as exc:
        LOG.error("training %s: its provenance record: %s", training.uuid, exc)
        return None
    return path


def _noted(job_dir: Path) -> list[dict[str, Any]]:
    try:
        found = json.loads((job_dir / INPUTS_FILE).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        LOG.warning("%s cannot be read: %s", job_dir / INPUTS_FILE, exc)
        return []
    return found if isinstance(found, list) else []


__all__ = ["INPUTS_FILE", "RECORD_FILE", "note_inputs", "record_training"]
