"""Prediction jobs as SLURM batch jobs (``--train-backend slurm``).

The same machinery as the SLURM trainings (:mod:`deepaas.training.backends.slurm`):
the server writes the job's directory (moved uploads, pickled arguments, a
batch script from the ``--slurm-*`` options), submits it with ``sbatch`` and
then only observes: it polls SLURM every ``--slurm-poll-interval`` seconds
and records what the scheduler and the job's own files say.  The job runs
:mod:`deepaas.jobs.slurm_job`, which writes the result and ``outcome.json``
into its directory; it never touches the store.  A job therefore outlives
the server, and the next server on the state directory collects its result.

A SLURM job is recorded with ``owner = "slurm:<job id>"``.  Unlike a
training (whose 2.x clients stop polling on anything but ``running``), a
prediction job is ``queued`` while SLURM holds it pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import pickle
import shutil
import time
import uuid as uuid_mod
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from deepaas.jobs import _jobdir
from deepaas.jobs.store import SLURM_OWNER, UNFINISHED, JobStore, PredictJob
from deepaas.model.loading import ModelSpec
from deepaas.model.wrapper import RawArguments
from deepaas.training._jobdir import read_outcome, remove_file
from deepaas.training.backends.slurm.commands import (
    JobInfo,
    SlurmClient,
    SlurmSettings,
    SlurmUnavailable,
    job_script,
)
from deepaas.training.backends.slurm.files import (
    JOB_FILE,
    OUTPUT_FILE,
    SCRIPT_FILE,
    read_status,
    write_json,
)
from deepaas.training.store import (
    CANCELLED,
    DONE,
    ERROR,
    QUEUED,
    RUNNING,
    write_private,
)

LOG = logging.getLogger(__name__)

OWNER_PREFIX = SLURM_OWNER
CANCEL_FILE = "cancel-requested.json"
#: How long a job SLURM does not list yet may take to show up.
_FORGOTTEN_AFTER = 30.0

Io = Callable[..., Awaitable[Any]]


def slurm_job_id(job: PredictJob) -> str | None:
    """The SLURM job id of a job run by SLURM, None for a local one."""
    if job.owner.startswith(OWNER_PREFIX):
        return job.owner[len(OWNER_PREFIX) :]
    return None


@dataclasses.dataclass(frozen=True)
class JobFile:
    """What the SLURM job needs to run one prediction (pickled)."""

    uuid: str
    spec: ModelSpec
    raw: RawArguments
    accept: str | None
    concrete: str | None
    log_level: int = logging.INFO


def settle(job_id: str, info: JobInfo, job_dir: Path) -> dict[str, Any]:
    """The record's changes for a job whose SLURM job has ended."""
    outcome = read_outcome(job_dir / _jobdir.OUTCOME_NAME) or {}
    if outcome.get("status") in (DONE, ERROR):
        return {
            "status": outcome["status"],
            "media_type": outcome.get("media_type"),
            "result_size": outcome.get("size"),
            "error_status": outcome.get("error_status"),
            "message": outcome.get("message"),
        }
    if (job_dir / CANCEL_FILE).exists():
        message = f"cancelled by a DELETE request (SLURM job {job_id})"
        return {"status": CANCELLED, "message": message}
    if info.state == "CANCELLED":
        message = f"SLURM job {job_id} was cancelled outside deepaas"
        return {"status": CANCELLED, "message": message}
    detail = f"SLURM job {job_id} ended {info.state} without a result"
    if info.reason not in ("", "None"):
        detail += f" (reason {info.reason})"
    return {"status": ERROR, "message": detail}


class SlurmJobs:
    """Submits prediction jobs to SLURM and records what becomes of them."""

    def __init__(
        self,
        state_dir: Path,
        settings: SlurmSettings,
        *,
        log_level: int = logging.INFO,
        gpus_of: Callable[[str], int] = lambda model: 0,
        client: SlurmClient | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).expanduser().absolute()
        self.store = JobStore(self.state_dir / "trainings.sqlite")
        self.settings = settings
        self.log_level = log_level
        self.gpus_of = gpus_of
        self.client = client or SlurmClient()
        self._io: Io | None = None
        self._on_end: Callable[[PredictJob], Awaitable[None]] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._refreshing = asyncio.Lock()

    async def start(
        self, io: Io, on_end: Callable[[PredictJob], Awaitable[None]]
    ) -> None:
        """Collect what ended while no server watched, then keep watching."""
        self._io, self._on_end = io, on_end
        try:
            await self.refresh()
        except SlurmUnavailable as exc:
            LOG.warning("prediction jobs: %s; asking again later", exc.message)
        self._poller = asyncio.create_task(self._poll(), name="deepaas-slurm-jobs")

    async def close(self) -> None:
        """Stop watching; the jobs themselves go on."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def _run_io(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self._io is not None, "start() first"
        return await self._io(fn, *args)

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
            self._wake.clear()
            try:
                await self.refresh()
            except SlurmUnavailable as exc:
                LOG.warning("prediction jobs: %s; asking again later", exc.message)
            except Exception:
                LOG.exception("prediction jobs: asking SLURM about the jobs failed")

    async def submit(
        self,
        spec: ModelSpec,
        raw: RawArguments,
        accept: str | None,
        concrete: str | None,
        args: dict[str, Any],
    ) -> PredictJob:
        """Write the job's directory, submit it, record it (queued)."""
        job_uuid = uuid_mod.uuid4().hex
        job_dir = self.state_dir / _jobdir.JOBS_DIR / job_uuid
        job_id = None
        try:
            job_raw = await self._run_io(_jobdir.make_job_dir, raw, job_dir)
            job = JobFile(job_uuid, spec, job_raw, accept, concrete, self.log_level)
            write_private(job_dir / JOB_FILE, pickle.dumps(job))
            script = job_dir / SCRIPT_FILE
            text = job_script(
                self.settings,
                name=f"deepaas-predict-{spec.name}-{job_uuid[:8]}",
                job_dir=job_dir,
                output=job_dir / OUTPUT_FILE,
                gpus=self.gpus_of(spec.name),
                module="deepaas.jobs.slurm_job",
                kind="prediction job",
            )
            write_private(script, text.encode())
            job_id = await self.client.submit(script)
            record = PredictJob.submitted(
                uuid=job_uuid,
                model=spec.name,
                args=args,
                accept=accept,
                job_dir=str(job_dir.relative_to(self.state_dir)),
                owner=OWNER_PREFIX + job_id,
            )
            record.scheduler_state = "PENDING"
            await self._run_io(self.store.insert, record)
        except BaseException:
            if job_id is not None:
                await self.client.cancel(job_id)
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        LOG.info(
            "prediction job %s of model %r submitted as SLURM job %s",
            job_uuid,
            spec.name,
            job_id,
        )
        self._wake.set()
        return record

    async def refresh(self, only: str | None = None) -> None:
        """Record what SLURM says of every unfinished SLURM job."""
        async with self._refreshing:
            jobs = {
                job_id: job
                for job in await self._run_io(self.store.unfinished)
                if (job_id := slurm_job_id(job)) is not None
                and (only is None or job.uuid == only)
            }
            if not jobs:
                return
            infos = await self.client.query(list(jobs))
            for job_id, job in jobs.items():
                ended = await self._run_io(self._apply, job_id, job, infos.get(job_id))
                if ended is not None and self._on_end is not None:
                    await self._on_end(ended)

    def _apply(
        self, job_id: str, job: PredictJob, info: JobInfo | None
    ) -> PredictJob | None:
        """Record what SLURM says of one job (blocking); answer it if it ended."""
        job_dir = self.state_dir / job.job_dir
        status = read_status(job_dir)
        if info is None:  # SLURM has forgotten the job (no accounting database)
            if status.get("state") == "ended":
                failed = "COMPLETED" if status.get("exitcode") == 0 else "FAILED"
                info = JobInfo(job_id, failed)
            elif time.time() - job.submitted_at < _FORGOTTEN_AFTER:
                return None
            else:
                info = JobInfo(job_id, "UNKNOWN", "SLURM no longer knows the job")
        seen = {"scheduler_state": info.state, "scheduler_reason": info.shown_reason}
        if not info.ended and info.state != "UNKNOWN":
            changes: dict[str, Any] = {
                k: v for k, v in seen.items() if getattr(job, k) != v
            }
            if not info.pending and job.status == QUEUED:
                changes["status"] = RUNNING
                changes["started_at"] = status.get("started_at") or time.time()
            if changes:
                self.store.update(job.uuid, only_if=UNFINISHED, **changes)
            return None
        changes = settle(job_id, info, job_dir)
        finished_at = status.get("ended_at") or time.time()
        started_at = job.started_at or status.get("started_at")  # None: never ran
        if not self.store.update(
            job.uuid,
            only_if=UNFINISHED,
            started_at=started_at,
            finished_at=finished_at,
            **seen,
            **changes,
        ):
            return None
        _jobdir.remove_uploads(job_dir)
        remove_file(job_dir / _jobdir.OUTCOME_NAME)
        return self.store.get(job.uuid)

    async def cancel(self, job: PredictJob) -> None:
        """Cancel the job's SLURM job; return once SLURM says it has ended."""
        job_id = slurm_job_id(job)
        assert job_id is not None
        job_dir = self.state_dir / job.job_dir
        info = (await self.client.query([job_id])).get(job_id)
        if info is not None and not info.ended:
            await self._run_io(write_json, job_dir / CANCEL_FILE, {"at": time.time()})
            await self.client.cancel(job_id)
            await self.client.wait_ended(job_id)
        await self.refresh(only=job.uuid)


__all__ = ["JobFile", "SlurmJobs", "slurm_job_id"]
