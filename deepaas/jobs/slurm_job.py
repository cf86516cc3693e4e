"""What a SLURM prediction job runs: ``python -m deepaas.jobs.slurm_job DIR``.

One process on the compute node: it imports and warms the model, runs the
prediction the server prepared in ``DIR`` (:class:`~deepaas.jobs.slurm.
JobFile`), writes the answer's body to ``result`` and how it ended to
``outcome.json`` (both atomically), and reports its node and times in
``slurm-status.json``, as a SLURM training does.  It never touches the
store.  SIGTERM (``scancel``, SLURM's time limit) ends it.
"""

from __future__ import annotations

import json
import logging
import pickle
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepaas.jobs import _jobdir
from deepaas.jobs.slurm import JobFile
from deepaas.model.wrapper import load_wrapped
from deepaas.training.backends.slurm.files import (
    JOB_FILE,
    STATUS_FILE,
    running_status,
    write_json,
)
from deepaas.training.store import write_private

LOG = logging.getLogger("deepaas.jobs")


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def run_job(job_dir: Path) -> int:
    """Run the prediction prepared in ``job_dir``; 0 when it is done."""
    with open(job_dir / JOB_FILE, "rb") as handle:
        # Written by the server into the job's private (0700) directory.
        job: JobFile = pickle.load(handle)  # noqa: S301
    logging.basicConfig(
        level=job.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    signal.signal(signal.SIGTERM, _exit_on_signal)
    status = running_status()
    write_json(job_dir / STATUS_FILE, status)
    LOG.info(
        "prediction job %s of model %r running on %s",
        job.uuid,
        job.spec.name,
        status["node"],
    )
    try:
        wrapper = load_wrapped(job.spec, warm=True)
        answer = wrapper.run_predict(job.raw, job.accept)
    except Exception as exc:
        if not hasattr(exc, "status"):
            LOG.exception("prediction job %s failed", job.uuid)
        error_status, body, message = _jobdir.error_answer(exc)
        LOG.error("prediction job %s failed: %s", job.uuid, message)
        outcome: dict[str, Any] = {
            "status": "error",
            "media_type": "application/json",
            "error_status": error_status,
            "message": message,
        }
    else:
        body = answer.body
        media_type = answer.content_type
        if job.concrete is not None and media_type == job.accept:
            media_type = job.concrete
        outcome = {"status": "done", "media_type": media_type}
    outcome["size"] = _jobdir.write_result(job_dir, body)
    write_private(
        job_dir / _jobdir.OUTCOME_NAME, json.dumps(outcome).encode(), sync=True
    )
    status.update(
        state="ended",
        exitcode=0 if outcome["status"] == "done" else 1,
        ended_at=time.time(),
    )
    write_json(job_dir / STATUS_FILE, status)
    return 0 if outcome["status"] == "done" else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the batch script deepaas writes."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m deepaas.jobs.slurm_job JOB_DIR", file=sys.stderr)
        return 2
    return run_job(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
