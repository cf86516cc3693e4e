"""The local training backend: trainings run in processes of this server.

A training is, while it runs, one spawned process in a session of its own
(:mod:`deepaas.training._child`).  The backend keeps at most
``max_concurrent`` of them running (0: no limit, as in DEEPaaS 2.x); the
others wait in submission order with status ``queued``.  Beyond
``max_trainings`` unfinished (queued or running) trainings, a submission is
refused with :class:`~deepaas.training.errors.TooManyTrainings` (503).  A
training that runs past ``timeout`` seconds, or is cancelled, gets SIGTERM
and ``cancel_grace`` seconds to stop before SIGKILL.

Its records belong to this server (``owner`` is the server's id): should
the server stop without settling them, the next one marks them as
interrupted (see :mod:`deepaas.training._housekeeping`).
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import os
import shutil
import signal
import time
import uuid as uuid_mod
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from deepaas.model.loading import ModelSpec
from deepaas.model.wrapper import RawArguments
from deepaas.provenance import visible_devices
from deepaas.provenance.trainings import note_inputs, record_training
from deepaas.training import _processes
from deepaas.training._child import ChildJob, start_process
from deepaas.training._jobdir import (
    LOG_NAME,
    OUTCOME_NAME,
    UPLOADS_DIR,
    local_outcome,
    move_uploads,
    remove_file,
)
from deepaas.training._logwriter import DRAIN_SECONDS, LogPump, LogWriter
from deepaas.training.backends import ServiceLink
from deepaas.training.errors import (
    InsufficientStorage,
    TooManyTrainings,
    TrainingStoreBusy,
    TrainingStoreUnusable,
)
from deepaas.training.settings import DEFAULT_MAX_BYTES, check_max_bytes
from deepaas.training.store import (
    CANCELLED,
    CANCELLED_MESSAGE,
    ERROR,
    INTERRUPTED_BY_SHUTDOWN,
    PRIVATE_DIR_MODE,
    QUEUED,
    RUNNING,
    STORE_WAIT,
    UNFINISHED,
    Training,
)

#: The logger keeps the name it had before the backends moved, so that a
#: logging set-up (or a search of the logs) naming it still finds its lines.
LOG = logging.getLogger("deepaas.training.service")

#: Seconds between two tries to record what a training did, while the store
#: or its disk cannot be written (a full disk, another process's lock).
RECORD_RETRY = 1.0
#: The store and disk failures that end when space returns or a lock goes.
_OUTAGES = (TrainingStoreBusy, TrainingStoreUnusable, InsufficientStorage)


def check_not_negative(options: tuple[tuple[str, float], ...]) -> None:
    """Refuse a negative value, naming the option that sets it."""
    for option, value in options:
        if value < 0:
            raise ValueError(f"{option} must be >= 0 (got {value})")


@dataclasses.dataclass(eq=False)
class _Job:
    """The backend's handle on a queued or running training."""

    uuid: str
    spec: ModelSpec
    raw: RawArguments
    job_dir: Path
    log: LogWriter
    finished: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    process: Any = None
    alive_end: Connection | None = None
    pump: LogPump | None = None
    stop_reason: str | None = None
    kill_deadline: float | None = None
    task: asyncio.Task[None] | None = None
    killer: asyncio.Task[None] | None = None
    started_at: float | None = None
    start_recorded: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    recorder: asyncio.Task[None] | None = None


class LocalBackend:
    """Runs trainings in child processes of this server, and records them.

    Example::

        service = TrainingService(state_dir, backend=LocalBackend(timeout=3600))
    """

    scheduler: str | None = None  # the trainings are processes of this server

    def __init__(
        self,
        *,
        max_concurrent: int = 0,
        timeout: float = 0.0,
        cancel_grace: float = 10.0,
        training_envs: Mapping[str, Mapping[str, str]] | None = None,
        log_level: int = logging.INFO,
        max_log_bytes: int = DEFAULT_MAX_BYTES,
        max_trainings: int = 32,
    ) -> None:
        check_not_negative(
            (
                ("--max-concurrent-trainings", max_concurrent),
                ("--train-timeout", timeout),
                ("--train-cancel-grace", cancel_grace),
                ("--max-trainings", max_trainings),
            )
        )
        check_max_bytes(max_log_bytes)
        self.max_concurrent = max_concurrent
        self.max_trainings = max_trainings
        self.timeout = timeout
        self.cancel_grace = cancel_grace
        self.training_envs = {k: dict(v) for k, v in (training_envs or {}).items()}
        self.log_level = log_level
        self.max_log_bytes = max_log_bytes
        self._link: ServiceLink | None = None
        # Trainings that ended whose end is not yet recorded (the store or
        # its disk failed): answered from here until it is.
        self._endings: dict[str, dict[str, Any]] = {}
        self._recording: set[asyncio.Task[None]] = set()
        self._late: set[str] = set()  # of those, the ones a write failed for
        self._context = multiprocessing.get_context("spawn")
        self._queue: collections.deque[_Job] = collections.deque()
        self._running: dict[str, _Job] = {}
        self._jobs: dict[str, _Job] = {}
        self._submitting = 0
        self._closing = False

    @property
    def link(self) -> ServiceLink:
        if self._link is None:
            raise RuntimeError("the local training backend is not started")
        return self._link

    def describe(self) -> str:
        if self.max_concurrent:
            return f"at most {self.max_concurrent} at once"
        return "no limit on how many run at once"

    async def start(self, link: ServiceLink) -> None:
        """Take the service's store; nothing of this server's ran before it
        started (what earlier servers left, the service settles)."""
        self._link = link

    async def close(self) -> None:
        """Stop every training of this server; record how each ended."""
        self._closing = True
        while self._queue:
            job = self._queue.popleft()
            self._finish(job, ERROR, None, INTERRUPTED_BY_SHUTDOWN)
        running = list(self._running.values())
        for job in running:
            self._request_stop(job, "shutdown")
        await asyncio.gather(*(job.finished.wait() for job in running))
        recorders = [t for t in self._recorders() if not t.done()]
        if recorders:  # each tries once more, then gives up
            await asyncio.wait(recorders, timeout=4 * STORE_WAIT)
        for uuid in self._endings:
            LOG.error(
                "training %s: its end (%s) could not be recorded before the "
                "server stopped; the next server settles it",
                uuid,
                self._endings[uuid]["status"],
            )

    def _recorders(self) -> builtins.list[asyncio.Task[None]]:
        return list(self._recording)

    # -- the service's operations ---------------------------------------------

    async def submit(
        self, spec: ModelSpec, raw: RawArguments, args: dict[str, Any]
    ) -> Training:
        """Record the training, move its uploads in, queue it; answer its
        record (``running`` if it started at once)."""
        link = self.link
        held = len(self._jobs) + self._submitting
        if self.max_trainings and held >= self.max_trainings:
            raise TooManyTrainings(
                f"this server already holds {held} unfinished trainings "
                "(--max-trainings); retry when one has ended"
            )
        training_id = uuid_mod.uuid4().hex
        job_dir = link.state_dir / link.jobs_dir / training_id
        self._submitting += 1  # counted while its uploads move
        try:
            moving = asyncio.ensure_future(link.io(_make_job_dir, raw, job_dir))
            try:
                job_raw = await asyncio.shield(moving)
            except asyncio.CancelledError:
                # Its client went away: let the move end before the removal.
                await asyncio.wait([moving])
                if not moving.cancelled():
                    moving.exception()  # retrieved: the request is gone anyway
                raise
            training = Training.submitted(
                uuid=training_id,
                model=spec.name,
                args=args,
                job_dir=str(job_dir.relative_to(link.state_dir)),
                owner=link.server_id,
            )
            await link.io(link.store.insert, training)
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        finally:
            self._submitting -= 1
        job = _Job(
            training_id,
            spec,
            job_raw,
            job_dir,
            LogWriter(job_dir / LOG_NAME, self.max_log_bytes),
        )
        self._jobs[training_id] = job
        self._queue.append(job)
        LOG.info("training %s of model %r submitted", training_id, spec.name)
        self._schedule()
        if job.started_at is not None:
            # Answered once recorded, so that every reader agrees with it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.start_recorded.wait(), STORE_WAIT)
            training = dataclasses.replace(
                training, status=RUNNING, started_at=job.started_at
            )
        return training

    async def cancel(self, training: Training) -> bool:
        """Cancel a training of this server; answer once its processes are gone.

        A training that has ended but whose end is not yet recorded cannot
        be forgotten yet: that is a 503, retried later.
        """
        job = self._jobs.get(training.uuid)
        if job is None:
            if training.uuid in self._endings:
                raise TrainingStoreBusy(
                    f"training {training.uuid} has ended, but its end is not yet "
                    f"recorded (the training store cannot be written now); "
                    "retry later"
                )
            return False
        if job in self._queue:
            self._queue.remove(job)
            self._finish(job, CANCELLED, None, CANCELLED_MESSAGE + " before it started")
        else:
            self._request_stop(job, "cancel")
            await job.finished.wait()
        if job.recorder is not None:  # answered as recorded, if it can be
            await asyncio.wait({job.recorder}, timeout=STORE_WAIT)
        return True

    def known(self, training: Training) -> Training:
        """The record, with what this server knows and could not yet write."""
        ending = self._endings.get(training.uuid)
        if ending is None or training.finished or training.uuid not in self._late:
            return training
        return dataclasses.replace(training, **ending)

    # -- running ------------------------------------------------------------

    def _schedule(self) -> None:
        while (
            self._queue
            and not self._closing
            and (not self.max_concurrent or len(self._running) < self.max_concurrent)
        ):
            job = self._queue.popleft()
            self._running[job.uuid] = job
            job.started_at = time.time()
            job.task = asyncio.create_task(
                self._run(job), name=f"deepaas-training-{job.uuid}"
            )

    async def _record_start(self, job: _Job) -> None:
        """Record that ``job`` runs, before its process starts; retried while
        the store cannot be written (the training stays queued meanwhile)."""
        if await self._write_until_done(
            job,
            "its start",
            functools.partial(
                self.link.store.update,
                job.uuid,
                only_if=(QUEUED,),
                status=RUNNING,
                started_at=job.started_at,
            ),
            give_up=lambda: job.stop_reason is not None,
        ):
            job.start_recorded.set()

    async def _write_until_done(
        self,
        job: _Job,
        what: str,
        write: Any,
        *,
        give_up: Any,
        late: set[str] | None = None,
    ) -> bool:
        """Run ``write`` on the store's thread until it works; answer whether it
        did (False once ``give_up()``)."""
        failed = False
        while True:
            try:
                await self.link.io(write)
            except _OUTAGES as exc:
                if give_up():
                    LOG.error(
                        "training %s: %s could not be recorded: %s",
                        job.uuid,
                        what,
                        exc.message,
                    )
                    return False
                if not failed:
                    LOG.warning(
                        "training %s: %s cannot be recorded now (%s); "
                        "retrying every %g s",
                        job.uuid,
                        what,
                        exc.message,
                        RECORD_RETRY,
                    )
                failed = True
                if late is not None:
                    late.add(job.uuid)
                await asyncio.sleep(RECORD_RETRY)
                continue
            if failed:
                LOG.info("training %s: %s is recorded now", job.uuid, what)
            return True

    async def _run(self, job: _Job) -> None:
        try:
            await self._record_start(job)
            status, output, message = await self._execute(job)
        except asyncio.CancelledError:
            # The event loop is going away without close(): leave nothing behind.
            if job.process is not None:
                _processes.signal_group(job.process.pid, signal.SIGKILL)
            self._finish(job, ERROR, None, INTERRUPTED_BY_SHUTDOWN)
            raise
        except Exception as exc:
            LOG.exception("training %s could not be run", job.uuid)
            if job.process is not None:
                _processes.signal_group(job.process.pid, signal.SIGKILL)
            status, output, message = (
                ERROR,
                None,
                f"the training could not be run: {exc}",
            )
        finally:
            if job.killer is not None:
                job.killer.cancel()
        self._finish(job, status, output, message)

    async def _execute(self, job: _Job) -> tuple[str, Any, str | None]:
        if job.stop_reason is not None:
            return local_outcome(job.job_dir, job.stop_reason, None, self.timeout)
        loop = asyncio.get_running_loop()
        child = ChildJob(
            uuid=job.uuid,
            spec=job.spec,
            raw=job.raw,
            job_dir=str(job.job_dir),
            log_file=str(job.log.path),
            outcome_file=str(job.job_dir / OUTCOME_NAME),
            env=self.training_envs.get(job.spec.name, {}),
            grace=self.cancel_grace,
            log_level=self.log_level,
            max_log_bytes=self.max_log_bytes,
        )
        process, alive_end, output = await loop.run_in_executor(
            None, start_process, self._context, child
        )
        job.pump = LogPump(output, job.log, name=f"deepaas-log-{job.uuid[:8]}")
        job.pump.start()
        job.process = process
        job.alive_end = alive_end
        try:
            await self.link.io(self.link.store.update, job.uuid, pid=process.pid)
        except _OUTAGES as exc:  # only shown to people reading the store
            LOG.warning(
                "training %s: its pid could not be recorded: %s", job.uuid, exc.message
            )
        LOG.info(
            "training %s of model %r running in process %d",
            job.uuid,
            job.spec.name,
            process.pid,
        )
        timer = (
            loop.call_later(self.timeout, self._request_stop, job, "timeout")
            if self.timeout
            else None
        )
        if job.stop_reason is not None:  # cancelled while the process started
            self._signal_stop(job)
        try:
            await _processes.wait_for_exit(process)
        finally:
            if timer is not None:
                timer.cancel()
        # Whatever the model left behind goes too; the process itself is a
        # zombie until joined, so its pid (the group id) cannot be reused.
        deadline = job.kill_deadline or time.monotonic() + self.cancel_grace
        assert process.pid is not None  # started before it was watched
        if await _processes.stop_group(process.pid, deadline=deadline):
            job.log.write_line("processes left behind were killed")
        await loop.run_in_executor(None, process.join)
        alive_end.close()
        if not await loop.run_in_executor(None, job.pump.finish, DRAIN_SECONDS):
            job.log.write_line(
                "a process that outlived the training still writes "
                "to its output; that goes on below"
            )
        return local_outcome(
            job.job_dir, job.stop_reason, process.exitcode, self.timeout
        )

    def _request_stop(self, job: _Job, reason: str) -> None:
        if job.stop_reason is not None:
            return
        job.stop_reason = reason
        job.kill_deadline = time.monotonic() + self.cancel_grace
        if job.process is not None:
            self._signal_stop(job)

    def _signal_stop(self, job: _Job) -> None:
        job.log.write_line(
            f"stopping ({job.stop_reason}): SIGTERM sent; "
            f"SIGKILL follows after {self.cancel_grace:g} s"
        )
        _processes.signal_group(job.process.pid, signal.SIGTERM)
        job.killer = asyncio.create_task(self._kill_after_grace(job))

    async def _kill_after_grace(self, job: _Job) -> None:
        await asyncio.sleep(max(0.0, (job.kill_deadline or 0) - time.monotonic()))
        if job.process is not None and job.process.is_alive():
            job.log.write_line("did not stop in time: SIGKILL sent")
            _processes.signal_group(job.process.pid, signal.SIGKILL)

    def _finish(self, job: _Job, status: str, output: Any, message: str | None) -> None:
        """Free a training's slot, start the next one, record how it ended.

        The record is written on the store's thread, retried until the store
        and its disk take it; meanwhile this server answers the ending it
        knows (see :meth:`known`).
        """
        self._endings[job.uuid] = {
            "status": status,
            "output": output,
            "message": message,
            "finished_at": time.time(),
        }
        self._running.pop(job.uuid, None)
        self._jobs.pop(job.uuid, None)
        job.recorder = asyncio.create_task(
            self._record_end(job), name=f"deepaas-record-{job.uuid}"
        )
        self._recording.add(job.recorder)
        job.recorder.add_done_callback(self._recording.discard)
        job.finished.set()
        if not self._closing:
            self._schedule()

    async def _record_end(self, job: _Job) -> None:
        ending = self._endings[job.uuid]
        try:
            recorded = await self._write_until_done(
                job,
                f"its end ({ending['status']})",
                functools.partial(self._write_end, job, ending),
                give_up=lambda: self._closing,
                late=self._late,
            )
        except Exception:
            LOG.exception("training %s: recording its end failed", job.uuid)
            recorded = False
        finally:
            job.log.close()
        if recorded:
            self._endings.pop(job.uuid, None)
            self._late.discard(job.uuid)
            if not self._closing:
                await self.link.prune()

    def _write_end(self, job: _Job, ending: dict[str, Any]) -> None:
        """Record the end (blocking); then its uploads and outcome file go.

        The outcome file stays until the record is written: a server started
        after this one stopped reads the outcome from it.
        """
        if self.link.store.update(job.uuid, only_if=UNFINISHED, **ending):
            status, message = ending["status"], ending["message"]
            job.log.write_line(
                f"training ended: {status}" + (f" ({message})" if message else "")
            )
            LOG.info(
                "training %s of model %r ended: %s%s",
                job.uuid,
                job.spec.name,
                status,
                f" ({message})" if message else "",
            )
            self._write_provenance(job)
        shutil.rmtree(job.job_dir / UPLOADS_DIR, ignore_errors=True)
        remove_file(job.job_dir / OUTCOME_NAME)

    def _write_provenance(self, job: _Job) -> None:
        """The training's provenance record, in its folder (docs/provenance.md)."""
        training = self.link.store.get(job.uuid)
        if training is not None:
            env = {**os.environ, **self.training_envs.get(job.spec.name, {})}
            record_training(
                job.job_dir, training, spec=job.spec, devices=visible_devices(env)
            )


def _make_job_dir(raw: RawArguments, job_dir: Path) -> RawArguments:
    """Create a training's directory (0700) and move its uploads in."""
    job_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True)
    moved = move_uploads(raw, job_dir / UPLOADS_DIR)
    note_inputs(job_dir, moved)  # hashed as received, for the provenance record
    return moved


__all__ = ["RECORD_RETRY", "LocalBackend", "check_not_negative"]
