"""Settling a state directory: trainings of gone servers, and retention.

Several servers may share one state directory; these functions only read
and update the store and remove job directories, so that any server can
run them at start-up and whenever trainings are read or end.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from pathlib import Path

from deepaas.training import _processes
from deepaas.training._jobdir import LOG_NAME, OUTCOME_NAME, UPLOADS_DIR, read_outcome
from deepaas.training._logwriter import append_line
from deepaas.training.backends.slurm.backend import slurm_job_id
from deepaas.training.store import DONE, ERROR, UNFINISHED, TrainingStore

LOG = logging.getLogger(__name__)

SERVERS_DIR = "servers"
INTERRUPTED_BY_RESTART = (
    "interrupted by a server restart: the server that ran this training "
    "stopped before it finished"
)


def interrupt_orphans(
    store: TrainingStore, state_dir: Path, server_id: str, max_log_bytes: int
) -> list[str]:
    """Settle the unfinished trainings whose server is gone.

    A training whose process left its outcome (its server could not record
    it: a full disk, a crash) gets that outcome; the others are marked as
    interrupted.
    """
    servers = state_dir / SERVERS_DIR
    alive: dict[str, bool] = {}
    interrupted = []
    for training in store.unfinished():
        owner = training.owner
        if slurm_job_id(training) is not None:
            continue  # SLURM runs it, whether or not its server lives
        if owner == server_id:
            continue
        if owner not in alive:
            alive[owner] = _processes.server_alive(servers, owner)
        if alive[owner]:
            continue
        job_dir = state_dir / training.job_dir
        log_file = job_dir / LOG_NAME
        # The log's last write is the best estimate of when it stopped.
        try:
            ended = log_file.stat().st_mtime
        except OSError:
            ended = time.time()
        ended = max(ended, training.started_at or training.submitted_at)
        outcome = read_outcome(job_dir / OUTCOME_NAME) or {}
        if outcome.get("status") == DONE:
            status, output, message = DONE, outcome.get("output"), None
            line = "training ended: done (recorded by a later server)"
        elif outcome.get("status") == ERROR:
            status, output = ERROR, None
            message = str(outcome.get("message", "the training failed"))
            line = f"training ended: error ({message})"
        else:
            status, output, message = ERROR, None, INTERRUPTED_BY_RESTART
            line = INTERRUPTED_BY_RESTART
        if store.update(
            training.uuid,
            only_if=UNFINISHED,
            status=status,
            output=output,
            message=message,
            finished_at=ended,
        ):
            append_line(log_file, max_log_bytes, line)
            (job_dir / OUTCOME_NAME).unlink(missing_ok=True)
            shutil.rmtree(job_dir / UPLOADS_DIR, ignore_errors=True)
            interrupted.append(training.uuid)
    return interrupted


def apply_retention(
    store: TrainingStore, state_dir: Path, *, keep: int, keep_days: float
) -> None:
    """Forget finished trainings past ``--keep-trainings``/``-days``."""
    try:
        removed = store.prune(keep=keep, keep_days=keep_days)
    except sqlite3.Error:
        LOG.exception("trainings: applying the retention failed")
        return
    for training in removed:
        shutil.rmtree(state_dir / training.job_dir, ignore_errors=True)
    if removed:
        LOG.info(
            "trainings: %d finished training(s) forgotten (retention)", len(removed)
        )
