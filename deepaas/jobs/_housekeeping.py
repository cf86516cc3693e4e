"""Settling a state directory's prediction jobs: gone servers, retention, ends.

Any server sharing the state directory may run these, at start-up and
whenever jobs are read or end (blocking: on the store's thread).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from deepaas.jobs import _jobdir
from deepaas.jobs._provenance import record_job
from deepaas.jobs.slurm import slurm_job_id
from deepaas.jobs.store import INTERRUPTED, UNFINISHED, JobStore, PredictJob
from deepaas.model.loading import ModelSpec
from deepaas.provenance import this_host, visible_devices
from deepaas.training import _processes
from deepaas.training._housekeeping import SERVERS_DIR
from deepaas.training.backends.slurm.files import read_status
from deepaas.training.errors import (
    InsufficientStorage,
    TrainingStoreBusy,
    TrainingStoreUnusable,
)
from deepaas.training.store import DONE

LOG = logging.getLogger(__name__)

INTERRUPTED_BY_RESTART = (
    "interrupted: the server that ran this job stopped before it finished"
)


#: Seconds between two tries to record a job's end while the store fails.
RECORD_RETRY = 1.0
_OUTAGES = (TrainingStoreBusy, TrainingStoreUnusable, InsufficientStorage)


async def write_until_done(
    io: Callable[..., Awaitable[Any]],
    uuid: str,
    write: Callable[[], Any],
    *,
    give_up: Callable[[], bool],
) -> None:
    """``await io(write)``, retried every :data:`RECORD_RETRY` s while the
    store or its disk fails (a full disk, another process's lock); after
    one more try once ``give_up()`` (the server is stopping)."""
    failed = False
    while True:
        try:
            await io(write)
            return
        except _OUTAGES as exc:
            if give_up() and failed:
                LOG.error(
                    "prediction job %s: could not be recorded: %s", uuid, exc.message
                )
                return
            if not failed:
                LOG.warning(
                    "prediction job %s cannot be recorded now (%s); "
                    "retrying every %g s",
                    uuid,
                    exc.message,
                    RECORD_RETRY,
                )
            failed = True
            await asyncio.sleep(RECORD_RETRY)


def job_finished(
    job: PredictJob,
    state_dir: Path,
    *,
    spec: ModelSpec | None = None,
    devices: Sequence[str] | None = None,
) -> None:
    """What follows a job's recorded end, once per job: log it, write its
    provenance record (before its uploads go), whatever ran it.

    A SLURM job's record names the node and GPUs the job reported.
    """
    LOG.info(
        "prediction job %s of model %r ended: %s%s",
        job.uuid,
        job.model,
        job.status,
        f" ({job.message})" if job.message and job.status != DONE else "",
    )
    job_dir = state_dir / job.job_dir
    host = None
    extra: dict[str, Any] = {}
    slurm_id = slurm_job_id(job)
    if slurm_id is not None:
        status = read_status(job_dir)
        host = this_host()
        if status.get("node"):
            host = dataclasses.replace(host, hostname=str(status["node"]))
        devices = visible_devices(
            {"CUDA_VISIBLE_DEVICES": str(status.get("gpus") or "")}
        )
        extra["slurmJob"] = slurm_id
    record_job(job_dir, job, spec=spec, host=host, devices=devices, extra=extra)


def record_end(
    store: JobStore,
    state_dir: Path,
    record: PredictJob,
    ending: _jobdir.Ending,
    *,
    spec: ModelSpec,
    devices: Sequence[str] | None,
) -> None:
    """Write a job's result, then its end; then its uploads go (blocking).

    The result is on disk before the record says ``done``, so that every
    reader who sees the status can fetch it.
    """
    job_dir = state_dir / record.job_dir
    size = None
    if ending.body is not None:
        size = _jobdir.write_result(job_dir, ending.body)
    if store.update(
        record.uuid,
        only_if=UNFINISHED,
        status=ending.status,
        message=ending.message,
        media_type=ending.media_type,
        result_size=size,
        error_status=ending.error_status,
        finished_at=time.time(),
    ):
        ended = store.get(record.uuid)
        if ended is not None:
            job_finished(ended, state_dir, spec=spec, devices=devices)
    _jobdir.remove_uploads(job_dir)


def interrupt_orphans(
    store: JobStore, state_dir: Path, server_id: str
) -> list[PredictJob]:
    """Mark the unfinished local jobs of gone servers ``interrupted``.

    A local job runs in its server's workers, so it cannot outlive its
    server: it is never run again (its client resubmits it).  SLURM jobs
    are left to SLURM.
    """
    servers = state_dir / SERVERS_DIR
    alive: dict[str, bool] = {}
    settled = []
    for job in store.unfinished():
        owner = job.owner
        if slurm_job_id(job) is not None or owner == server_id:
            continue
        if owner not in alive:
            alive[owner] = _processes.server_alive(servers, owner)
        if alive[owner] or not store.update(
            job.uuid,
            only_if=UNFINISHED,
            status=INTERRUPTED,
            message=INTERRUPTED_BY_RESTART,
            finished_at=time.time(),
        ):
            continue
        ended = store.get(job.uuid)
        if ended is not None:
            job_finished(ended, state_dir)
            settled.append(ended)
        _jobdir.remove_uploads(state_dir / job.job_dir)
    return settled


def remove_stale_locks(state_dir: Path, server_id: str) -> None:
    """Remove the lock files of servers that are gone (any server's: one
    that had no unfinished job or training leaves its file otherwise)."""
    servers = state_dir / SERVERS_DIR
    for lock in servers.glob("*.lock"):
        if lock.stem != server_id:
            _processes.server_alive(servers, lock.stem)  # removes a stale one


def apply_retention(
    store: JobStore, state_dir: Path, *, keep: int, keep_days: float
) -> None:
    """Forget finished jobs past ``--keep-trainings``/``-days`` with their files."""
    removed = store.prune(keep=keep, keep_days=keep_days)
    for job in removed:
        shutil.rmtree(state_dir / job.job_dir, ignore_errors=True)
    if removed:
        LOG.info(
            "prediction jobs: %d finished job(s) forgotten (retention)", len(removed)
        )


def devices_of(envs: Mapping[str, Any] | None, model: str) -> list[str] | None:
    """The devices of a model's workers (the device plan's environments)."""
    env = (envs or {}).get(model)
    if env is None:
        return None
    found: list[str] = []
    for one in env if isinstance(env, list) else [env]:
        for device in visible_devices({str(k): str(v) for k, v in one.items()}):
            if device not in found:
                found.append(device)
    return found


__all__ = [
    "apply_retention",
    "devices_of",
    "interrupt_orphans",
    "job_finished",
    "record_end",
    "remove_stale_locks",
    "write_until_done",
]
