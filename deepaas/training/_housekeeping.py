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
from deepaas.training._jobdir import LOG_NAME, UPLOADS_DIR
from deepaas.training._logwriter import append_line
from deepaas.training.slurm import slurm_job_id
from deepaas.training.store import ERROR, UNFINISHED, TrainingStore

LOG = logging.getLogger(__name__)

SERVERS_DIR = "servers"
INTERRUPTED_BY_RESTART = (
    "interrupted by a server restart: the server that ran this training "
    "stopped before it finished"
)


def interrupt_orphans(
    store: TrainingStore, state_dir: Path, server_id: str, max_log_bytes: int
) -> list[str]:
    """Mark as interrupted the unfinished trainings whose server is gone."""
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
        if store.update(
            training.uuid,
            only_if=UNFINISHED,
            status=ERROR,
            message=INTERRUPTED_BY_RESTART,
            finished_at=ended,
        ):
            append_line(log_file, max_log_bytes, INTERRUPTED_BY_RESTART)
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
