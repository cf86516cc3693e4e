"""The provenance record of a prediction job, kept beside its result.

At submission the uploads are hashed as received (``inputs.sha256.json``,
:func:`deepaas.provenance.trainings.note_inputs`), since the model may
change them and they are removed when the job ends; at its end
:func:`record_job` writes ``provenance.json`` in the job's directory.
``GET .../predict/jobs/<id>/provenance`` answers it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deepaas.jobs._jobdir import RESULT_NAME
from deepaas.jobs.store import PredictJob
from deepaas.model.loading import ModelSpec, available_models
from deepaas.provenance import (
    RECORD_FILE,
    Artifact,
    Host,
    build_record,
    model_package,
    sha256_file,
    write_record,
)
from deepaas.provenance.trainings import INPUTS_FILE, note_inputs

LOG = logging.getLogger(__name__)

#: A job's status as a record's outcome (an interrupted job did not finish).
_OUTCOMES = {"done": "done", "error": "error", "cancelled": "cancelled"}

__all__ = ["INPUTS_FILE", "RECORD_FILE", "note_inputs", "record_job"]


def record_job(
    job_dir: Path,
    job: PredictJob,
    *,
    spec: ModelSpec | None = None,
    host: Host | None = None,
    devices: Sequence[str] | None = None,
    extra: Mapping[str, str | int | float | bool] | None = None,
) -> Path | None:
    """Write ``job_dir/provenance.json`` for a job that has ended.

    Never raises for what the disk or the model's installation refuses: the
    job's end is recorded in the store either way, so a failure here is
    logged and None answered.
    """
    spec = spec or available_models().get(job.model)
    if spec is None:
        LOG.warning(
            "prediction job %s: model %r is not installed here; no provenance record",
            job.uuid,
            job.model,
        )
        return None
    try:
        inputs = [
            Artifact(
                f"{item['argument']}: {item['name']}", item["sha256"], item.get("size")
            )
            for item in _noted(job_dir)
        ]
        outputs = []
        result = job_dir / RESULT_NAME
        if job.status == "done" and result.exists():
            outputs.append(Artifact("result", sha256_file(result), job.result_size))
        finished = job.finished_at
        record = build_record(
            kind="job",
            activity_id=job.uuid,
            model=model_package(spec.name, spec.target, namespace=spec.namespace),
            arguments=job.args,
            inputs=inputs,
            outputs=outputs,
            started=job.started_at or finished or job.submitted_at,
            ended=finished,
            outcome=_OUTCOMES.get(job.status, "error"),
            message=job.message,
            host=host,
            devices=devices,
            extra={
                **({"mediaType": job.media_type} if job.media_type else {}),
                **(extra or {}),
            },
        )
        path = job_dir / RECORD_FILE
        write_record(path, record)
    except (OSError, ValueError) as exc:
        LOG.error("prediction job %s: its provenance record: %s", job.uuid, exc)
        return None
    return path


def _noted(job_dir: Path) -> list[dict[str, Any]]:
    try:
        found = json.loads((job_dir / INPUTS_FILE).read_text())
    except (OSError, ValueError):
        return []
    return found if isinstance(found, list) else []
