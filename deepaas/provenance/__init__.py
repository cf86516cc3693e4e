"""Provenance records: which model, version, arguments and inputs made a result.

Every training, predict job and batch run (and, when asked, every ordinary
prediction) gets a W3C PROV-JSON document (docs/provenance.md).  This
package builds and writes them; it knows nothing of HTTP, the engine or the
batch runner, which call it with what they saw:

    from deepaas.provenance import Artifact, build_record, model_package, write_record

    record = build_record(
        kind="job", activity_id=job_id,
        model=model_package("echo", "pkg.echo:Model"),
        arguments={"text": "hi"},
        inputs=[Artifact("data", sha256_bytes(body))],
        outputs=[Artifact("answer", sha256_bytes(answer))],
        started=start, ended=end, outcome="done",
    )
    write_record(job_dir / "provenance.json", record)
"""

from deepaas.provenance.digests import copy_with_digest, sha256_bytes, sha256_file
from deepaas.provenance.environment import (
    Host,
    ModelPackage,
    model_package,
    this_host,
    visible_devices,
)
from deepaas.provenance.predictions import PredictionLog
from deepaas.provenance.record import (
    Artifact,
    artifacts,
    build_record,
    read_record,
    record_summary,
    timestamp,
    write_record,
)
from deepaas.provenance.verify import verify_record

#: The file name of a record stored beside a result (a training's folder).
RECORD_FILE = "provenance.json"

__all__ = [
    "RECORD_FILE",
    "Artifact",
    "Host",
    "ModelPackage",
    "PredictionLog",
    "artifacts",
    "build_record",
    "copy_with_digest",
    "model_package",
    "read_record",
    "record_summary",
    "sha256_bytes",
    "sha256_file",
    "this_host",
    "timestamp",
    "verify_record",
    "visible_devices",
    "write_record",
]
