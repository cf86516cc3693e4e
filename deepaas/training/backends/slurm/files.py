"""The files through which a SLURM job and the servers talk.

The job directory lies on a filesystem that the compute nodes share, and
each file in it has one writer: the server writes the job's script and
arguments before submitting it (and ``cancel-requested.json``); the job
writes ``slurm-status.json``, ``outcome.json`` and the log.  Files are
replaced atomically, so a reader on another machine sees the old or the new
content, never half of it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from deepaas.training.store import write_private

JOB_FILE = "slurm-job.pickle"
STATUS_FILE = "slurm-status.json"
SCRIPT_FILE = "slurm-job.sh"
#: What SLURM itself writes for the job (set-up lines, errors before Python).
OUTPUT_FILE = "slurm-output.log"


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Write ``value`` so that a reader sees the old file or the whole new one."""
    write_private(path, json.dumps(value).encode(), sync=True)


def running_status() -> dict[str, Any]:
    """What a SLURM job (training or prediction) says of itself as it starts:
    its SLURM job id, node and GPUs, as SLURM set them, and its pid."""
    return {
        "job_id": os.environ.get("SLURM_JOB_ID", ""),
        "node": os.environ.get("SLURMD_NODENAME") or os.uname().nodename,
        "gpus": os.environ.get(
            "CUDA_VISIBLE_DEVICES", os.environ.get("SLURM_JOB_GPUS", "")
        ),
        "pid": os.getpid(),
        "started_at": time.time(),
        "state": "running",
    }


def read_status(job_dir: Path) -> dict[str, Any]:
    """The job's own report (empty until the job has started)."""
    try:
        with open(job_dir / STATUS_FILE, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


__all__ = [
    "JOB_FILE",
    "OUTPUT_FILE",
    "SCRIPT_FILE",
    "STATUS_FILE",
    "read_status",
    "write_json",
]
