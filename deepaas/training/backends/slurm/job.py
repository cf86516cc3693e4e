"""What a SLURM job of deepaas runs: ``python -m deepaas.training.slurm_job DIR``.

The job runs the same training process as a local training
(:func:`deepaas.training._child.run_training`), spawned from here, so logs,
result and status mean the same on both backends.  This process stands in
for the server: the training watches a pipe from it and stops itself should
this process be killed.  SIGTERM (from ``scancel`` or at SLURM's time limit)
is passed on to the training's process group.

The job never touches the SQLite store, which may sit on a network
filesystem whose locks cannot be trusted.  It reports through SLURM (its
state and exit code) and through files in its directory, each written
atomically: ``slurm-status.json`` (node, job id, start and end) and the
training's own ``outcome.json``.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepaas.training import _processes
from deepaas.training._child import ChildJob, start_process
from deepaas.training._jobdir import OUTCOME_NAME, read_outcome
from deepaas.training._logwriter import DRAIN_SECONDS, LogPump, LogWriter
from deepaas.training.backends.slurm.files import (
    JOB_FILE,
    STATUS_FILE,
    running_status,
    write_json,
)


def _stop_group(pgid: int, grace: float) -> None:
    """SIGTERM what the training left behind, SIGKILL it after ``grace``."""
    if not _processes.group_members(pgid):
        return
    _processes.signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _processes.group_members(pgid):
        time.sleep(0.05)
    while _processes.group_members(pgid):
        _processes.signal_group(pgid, signal.SIGKILL)
        time.sleep(0.05)


def run_job(job_dir: Path) -> int:
    """Run the training prepared in ``job_dir``; 0 when it is done."""
    with open(job_dir / JOB_FILE, "rb") as handle:
        # Written by the server into the training's private (0700) directory.
        child: ChildJob = pickle.load(handle)  # noqa: S301
    status = running_status()
    write_json(job_dir / STATUS_FILE, status)
    log = LogWriter(Path(child.log_file), child.max_log_bytes)
    log.write_line(f"SLURM job {status['job_id']} running on {status['node']}")
    stopping: list[int] = []
    started: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.append(signum)
        if started:
            _processes.signal_group(started[0], signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    process, alive_end, output = start_process(
        multiprocessing.get_context("spawn"), child
    )
    assert process.pid is not None
    started.append(process.pid)
    if stopping:  # signalled while the process started
        _processes.signal_group(process.pid, signal.SIGTERM)
    pump = LogPump(output, log, name="deepaas-log-pump")
    pump.start()
    process.join()
    _stop_group(process.pid, child.grace)
    alive_end.close()
    if not pump.finish(DRAIN_SECONDS):
        log.write_line(
            "a process that outlived the training still holds its "
            "output; it is not logged any more"
        )
    outcome = read_outcome(job_dir / OUTCOME_NAME)
    done = outcome is not None and outcome.get("status") == "done"
    status.update(
        state="ended",
        exitcode=process.exitcode,
        ended_at=time.time(),
        signal=stopping[0] if stopping else None,
    )
    write_json(job_dir / STATUS_FILE, status)
    return 0 if done else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the batch script deepaas writes."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m deepaas.training.slurm_job JOB_DIR", file=sys.stderr)
        return 2
    return run_job(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
