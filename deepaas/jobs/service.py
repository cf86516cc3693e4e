"""PredictJobService: predictions that outlive their request.

``POST .../predict/`` with ``Prefer: respond-async`` hands the prediction to
this service, which records it as a job (:mod:`deepaas.jobs.store`, in the
training store's file), moves its uploads into the job's own directory and
answers at once.  A local job runs where every prediction runs: the
model's executor (its workers, their GPUs, queue bound and
``--predict-timeout``); at most ``max_concurrent`` jobs at once per server
(0: as many as the executor's queue takes; a full queue is waited out, not
failed).  With a SLURM backend (:mod:`deepaas.jobs.slurm`) each job is a
batch job instead, which outlives the server.

The result (or the error answer) is written to the job's directory and
kept under the trainings' retention (``keep``, ``keep_days``).  Beyond
``max_jobs`` unfinished jobs, or ``max_stored`` recorded ones, a
submission is refused with 503 and Retry-After.

Restarts follow the trainings' rules: each server holds a lock in the state
directory; a local job whose server is gone (stopped or killed) while it was
queued or running is marked ``interrupted``, never run again; a SLURM job is
picked up by the next server and its result collected.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import functools
import logging
import shutil
import time
import uuid as uuid_mod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from deepaas.engine.executor import Executor
from deepaas.exceptions import DeepaasError, QueueFull
from deepaas.jobs import _jobdir
from deepaas.jobs._housekeeping import (
    apply_retention,
    devices_of,
    interrupt_orphans,
    job_finished,
    record_end,
    remove_stale_locks,
    write_until_done,
)
from deepaas.jobs._jobdir import Ending
from deepaas.jobs.errors import (
    JobBusy,
    JobHasNoResult,
    JobNotFinished,
    JobNotFound,
    TooManyJobs,
    TooManyStoredJobs,
)
from deepaas.jobs.slurm import SlurmJobs, slurm_job_id
from deepaas.jobs.store import (
    INTERRUPTED,
    UNFINISHED,
    JobStore,
    PredictJob,
    parse_job_id,
)
from deepaas.model.wrapper import RawArguments
from deepaas.training import _processes
from deepaas.training._housekeeping import SERVERS_DIR
from deepaas.training.errors import (
    StateDirUnusable,
)
from deepaas.training.store import (
    CANCELLED,
    DATABASE_NAME,
    DONE,
    ERROR,
    QUEUED,
    RUNNING,
    STORE_WAIT,
    make_private_dir,
)
from deepaas.training.store_thread import StoreThread

LOG = logging.getLogger(__name__)

#: Seconds between two tries to hand a job to a model whose queue is full.
QUEUE_RETRY = 1.0
CANCELLED_MESSAGE = "cancelled by a DELETE request"
INTERRUPTED_BY_SHUTDOWN = "interrupted: the server shut down before this job finished"


@dataclasses.dataclass(eq=False)
class _Local:
    """The service's handle on one of its own queued or running jobs."""

    record: PredictJob
    executor: Executor
    raw: RawArguments
    concrete: str | None
    job_dir: Path
    task: asyncio.Task[None] | None = None
    ended: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


class PredictJobService:
    """Runs prediction jobs and records them durably.

    Example (what ``deepaas-run`` does through
    :func:`deepaas.jobs.config.job_service_from_settings`)::

        jobs = PredictJobService("/var/lib/deepaas", max_jobs=32)
        await jobs.start()
        job = await jobs.submit(executor, raw, accept)
        ...
        await jobs.close()
    """

    def __init__(
        self,
        state_dir: Path | str,
        *,
        max_jobs: int = 32,
        max_stored: int = 1000,
        max_concurrent: int = 0,
        keep: int = 0,
        keep_days: float = 0.0,
        slurm: SlurmJobs | None = None,
        worker_envs: Mapping[str, Any] | None = None,
    ) -> None:
        for option, value in (
            ("--max-predict-jobs", max_jobs),
            ("--max-stored-predict-jobs", max_stored),
            ("--max-concurrent-predict-jobs", max_concurrent),
            ("--keep-trainings", keep),
            ("--keep-trainings-days", keep_days),
        ):
            if value < 0:
                raise ValueError(f"{option} must be >= 0 (got {value})")
        self.state_dir = Path(state_dir).expanduser().absolute()
        self.max_jobs = max_jobs
        self.max_stored = max_stored
        self.max_concurrent = max_concurrent
        self.keep = keep
        self.keep_days = keep_days
        self.slurm = slurm
        #: The device plan's environments of the workers, for the records.
        self.worker_envs = worker_envs
        self.store = JobStore(self.state_dir / DATABASE_NAME, busy_timeout=STORE_WAIT)
        self.server_id = uuid_mod.uuid4().hex
        self._lock = _processes.ServerLock(self.state_dir / SERVERS_DIR, self.server_id)
        self._thread: StoreThread | None = None
        self._local: dict[str, _Local] = {}
        self._queue: list[_Local] = []
        self._running = 0
        self._submitting = 0
        self._started = False
        self._closing = False

    # -- life cycle -----------------------------------------------------------

    async def start(self) -> None:
        """Open the store, claim this server's lock, settle earlier jobs."""
        self._thread = StoreThread()
        try:
            await asyncio.to_thread(self._open)
        except Exception as exc:
            self._thread.close()
            self._thread = None
            raise StateDirUnusable(
                f"cannot use the state directory {str(self.state_dir)!r} "
                f"(--state-dir) for prediction jobs: {exc}"
            ) from None
        self._started = True
        settled = await self._io(self.reconcile)
        await self._io(remove_stale_locks, self.state_dir, self.server_id)
        if settled:
            LOG.warning(
                "%d prediction job(s) of a stopped server marked as interrupted",
                len(settled),
            )
        await self._prune()
        if self.slurm is not None:
            await self.slurm.start(self._io, self._after_slurm_end)

    def _open(self) -> None:
        make_private_dir(self.state_dir)
        make_private_dir(self.state_dir / _jobdir.JOBS_DIR)
        JobStore(self.store.path).create()
        self._lock.acquire()

    async def close(self) -> None:
        """Interrupt this server's local jobs; release the state directory.

        SLURM jobs go on without a server.  Called before the models'
        workers stop, so that a running job is recorded as interrupted
        rather than failed by the workers' going away.
        """
        if not self._started or self._closing:
            return
        self._closing = True
        if self.slurm is not None:
            await self.slurm.close()
        for local in list(self._local.values()):
            await self._stop(local, Ending(INTERRUPTED, INTERRUPTED_BY_SHUTDOWN))
        self._lock.release()
        self._started = False
        if self._thread is not None:
            self._thread.close()
            self._thread = None

    async def _io(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn`` on the store's thread; store and disk failures as 503/507."""
        if self._thread is None:
            raise StateDirUnusable("the prediction job service is not running")
        return await self._thread.run(
            self.store.path, functools.partial(fn, *args, **kwargs)
        )

    def _check_started(self) -> None:
        if not self._started or self._closing:
            raise StateDirUnusable("the prediction job service is not running")

    # -- the API's operations -------------------------------------------------

    async def submit(
        self,
        executor: Executor,
        raw: RawArguments,
        accept: str | None,
        concrete: str | None = None,
    ) -> PredictJob:
        """Record a prediction job and queue it; answer its record.

        ``accept`` is the media type the model receives; ``concrete`` the
        one answered where the model answers ``accept`` itself (``image/png``
        asked of an ``image/*`` model).  The request's uploads are moved into
        the job's directory.
        """
        self._check_started()
        if self.slurm is not None:
            held = sum(
                1
                for j in await self._io(self.store.unfinished)
                if slurm_job_id(j) is not None
            )
        else:
            held = len(self._local) + self._submitting
        if self.max_jobs and held >= self.max_jobs:
            raise TooManyJobs(
                f"this server already holds {held} unfinished prediction jobs "
                "(--max-predict-jobs); retry when one has ended"
            )
        stored = await self._io(self.store.count)
        if self.max_stored and stored + self._submitting >= self.max_stored:
            raise TooManyStoredJobs(
                f"{stored} prediction jobs are stored (--max-stored-predict-jobs); "
                "DELETE finished ones, or retry once the retention "
                "(--keep-trainings, --keep-trainings-days) has forgotten some"
            )
        spec = executor.spec
        args = _jobdir.recorded_args(raw)
        if self.slurm is not None:
            return await self.slurm.submit(spec, raw, accept, concrete, args)
        job_id = uuid_mod.uuid4().hex
        job_dir = self.state_dir / _jobdir.JOBS_DIR / job_id
        record = PredictJob.submitted(
            uuid=job_id,
            model=spec.name,
            args=args,
            accept=accept,
            job_dir=str(job_dir.relative_to(self.state_dir)),
            owner=self.server_id,
        )

        async def prepare() -> RawArguments:
            try:
                moved: RawArguments = await self._io(_jobdir.make_job_dir, raw, job_dir)
                await self._io(self.store.insert, record)
            except BaseException:
                shutil.rmtree(job_dir, ignore_errors=True)
                raise
            return moved

        self._submitting += 1
        preparing = asyncio.ensure_future(prepare())
        try:
            job_raw = await asyncio.shield(preparing)
        except asyncio.CancelledError:
            # Its client went away: a job recorded meanwhile still runs (it
            # is listed), rather than stay queued with nothing behind it.
            await asyncio.wait([preparing])
            if not preparing.cancelled() and preparing.exception() is None:
                self._enqueue(
                    _Local(record, executor, preparing.result(), concrete, job_dir)
                )
            raise
        finally:
            self._submitting -= 1
        self._enqueue(_Local(record, executor, job_raw, concrete, job_dir))
        return record

    def _enqueue(self, local: _Local) -> None:
        self._local[local.record.uuid] = local
        self._queue.append(local)
        LOG.info(
            "prediction job %s of model %r submitted",
            local.record.uuid,
            local.record.model,
        )
        self._schedule()

    async def list(self, model: str) -> builtins.list[PredictJob]:
        """Every recorded job of ``model``, oldest first."""
        self._check_started()
        return await self._io(self._list, model)  # type: ignore[no-any-return]

    def _list(self, model: str) -> builtins.list[PredictJob]:
        self.reconcile()
        return self.store.list(model)

    async def get(self, model: str, job_id: str) -> PredictJob:
        """One job of ``model``; 400 for a malformed id, 404 if unknown."""
        self._check_started()
        uuid = parse_job_id(job_id)
        return await self._io(self._get, model, uuid)  # type: ignore[no-any-return]

    def _get(self, model: str, uuid: str) -> PredictJob:
        self.reconcile()
        job = self.store.get(uuid)
        if job is None or job.model != model:
            raise JobNotFound(f"model {model!r} has no prediction job {uuid!r}")
        return job

    async def result(self, model: str, job_id: str) -> tuple[PredictJob, Path]:
        """The job and the file of its result; 409 unless it is done or failed."""
        job = await self.get(model, job_id)
        if job.status in UNFINISHED:
            raise JobNotFinished(
                f"prediction job {job.uuid} is {job.status}: its result is not "
                "ready yet; poll the job and ask again once it is done"
            )
        if not job.has_result:
            raise JobHasNoResult(
                f"prediction job {job.uuid} ended {job.status}: it has no result"
            )
        return job, self.state_dir / job.job_dir / _jobdir.RESULT_NAME

    async def delete(self, model: str, job_id: str) -> PredictJob:
        """Cancel an unfinished job, or forget a finished one and its result."""
        job = await self.get(model, job_id)
        local = self._local.get(job.uuid)
        if local is not None:
            # Shielded: a client that goes away mid-way still cancels it.
            await asyncio.shield(
                self._stop(local, Ending(CANCELLED, CANCELLED_MESSAGE))
            )
            return await self.get(model, job.uuid)
        if not job.finished and slurm_job_id(job) is not None:
            if self.slurm is None:
                raise JobBusy(
                    f"prediction job {job.uuid} is run by SLURM; cancel "
                    "it on a server with --train-backend slurm"
                )
            await self.slurm.cancel(job)
            return await self.get(model, job.uuid)
        if not job.finished:
            raise JobBusy(
                f"prediction job {job.uuid} is run by another server (pid "
                f"{job.owner_pid} on {job.owner_host!r}) that shares this state "
                "directory; cancel it there"
            )
        await self._io(self._forget, job)
        return job

    def _forget(self, job: PredictJob) -> None:
        if self.store.delete(job.uuid):
            shutil.rmtree(self.state_dir / job.job_dir, ignore_errors=True)
            LOG.info("prediction job %s of model %r forgotten", job.uuid, job.model)

    def reconcile(self) -> builtins.list[str]:
        """Mark the unfinished local jobs of gone servers interrupted (blocking)."""
        settled = interrupt_orphans(self.store, self.state_dir, self.server_id)
        return [job.uuid for job in settled]

    # -- running --------------------------------------------------------------

    def _schedule(self) -> None:
        while (
            self._queue
            and not self._closing
            and (not self.max_concurrent or self._running < self.max_concurrent)
        ):
            local = self._queue.pop(0)
            self._running += 1
            local.task = asyncio.create_task(
                self._run(local), name=f"deepaas-predict-job-{local.record.uuid}"
            )

    async def _run(self, local: _Local) -> None:
        uuid = local.record.uuid
        try:
            await self._write(
                local,
                functools.partial(
                    self.store.update,
                    uuid,
                    only_if=(QUEUED,),
                    status=RUNNING,
                    started_at=time.time(),
                ),
            )
            while True:
                try:
                    # Interruptible: a cancelled job stops its worker.
                    outcome = await local.executor.predict_interruptible(
                        local.raw, local.record.accept
                    )
                    break
                except QueueFull:  # the model's queue is full: wait for room
                    await asyncio.sleep(QUEUE_RETRY)
        except asyncio.CancelledError:
            raise  # whoever cancelled records the end
        except Exception as exc:
            if not isinstance(exc, DeepaasError):
                LOG.exception("prediction job %s failed", uuid)
            status, body, message = _jobdir.error_answer(exc)
            ending = Ending(ERROR, message, body, "application/json", status)
        else:
            media_type = outcome.content_type
            if local.concrete is not None and media_type == local.record.accept:
                media_type = local.concrete
            ending = Ending(DONE, None, outcome.body, media_type)
        await self._end(local, ending)

    async def _stop(self, local: _Local, ending: Ending) -> None:
        """End a queued or running job of this server's (cancel, shutdown)."""
        if local.record.uuid not in self._local:  # its end is being recorded
            await local.ended.wait()
            return
        if local.task is None:
            if local in self._queue:
                self._queue.remove(local)
            await self._end(local, ending)
            return
        local.task.cancel()
        try:
            await local.task
        except asyncio.CancelledError:
            pass
        if not local.ended.is_set():
            await self._end(local, ending)

    async def _end(self, local: _Local, ending: Ending) -> None:
        """Record how ``local`` ended; free its place and start the next job."""
        if self._local.pop(local.record.uuid, None) is not None and local.task:
            self._running -= 1
        try:
            await self._write(
                local,
                functools.partial(
                    record_end,
                    self.store,
                    self.state_dir,
                    local.record,
                    ending,
                    spec=local.executor.spec,
                    devices=devices_of(self.worker_envs, local.record.model),
                ),
            )
        except Exception:  # a bug, or a disk refusing more than space
            LOG.exception(
                "prediction job %s: its end could not be recorded", local.record.uuid
            )
        finally:
            local.ended.set()
            if not self._closing:
                self._schedule()
        if not self._closing:
            await self._prune()

    async def _write(self, local: _Local, write: Callable[[], Any]) -> None:
        """Run ``write`` on the store's thread, retried while the store fails."""
        await write_until_done(
            self._io, local.record.uuid, write, give_up=lambda: self._closing
        )

    async def _after_slurm_end(self, job: PredictJob) -> None:
        await self._io(job_finished, job, self.state_dir)
        if not self._closing:
            await self._prune()

    async def _prune(self) -> None:
        try:
            await self._io(self._apply_retention)
        except DeepaasError as exc:
            LOG.warning(
                "prediction jobs: applying the retention failed: %s", exc.message
            )

    def _apply_retention(self) -> None:
        apply_retention(
            self.store, self.state_dir, keep=self.keep, keep_days=self.keep_days
        )


__all__ = ["PredictJobService"]
