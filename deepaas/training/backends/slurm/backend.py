"""The SLURM training backend: each training is one batch job.

With ``--train-backend slurm``, ``POST .../train/`` writes the training's
job directory (copied uploads, the pickled arguments, a batch script) and
submits it with ``sbatch``.  The job runs
:mod:`deepaas.training.backends.slurm.job`, which runs the usual training
process.  The server is only an observer: it
polls SLURM every ``--slurm-poll-interval`` seconds and records in the store
what the scheduler and the job's own files say.  A job therefore outlives
the server, and any server on the same state directory picks it up.

A SLURM training is recorded with ``owner = "slurm:<job id>"``: it belongs
to the scheduler, not to a server, and is never marked as interrupted.

DEEPaaS 2.x clients poll a training while its status is ``running`` and
take any other status for its end, so a SLURM training is ``running`` from
its submission until its job ends, pending or not.  What SLURM says of the
job (``PENDING`` and why, ``RUNNING``, ``COMPLETING``...) is recorded beside
the status and answered in the training's ``slurm`` object.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pickle
import shutil
import time
import uuid as uuid_mod
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from deepaas.model.loading import ModelSpec, available_models
from deepaas.model.wrapper import RawArguments
from deepaas.provenance import this_host, visible_devices
from deepaas.provenance.trainings import note_inputs, record_training
from deepaas.training._child import ChildJob
from deepaas.training._jobdir import (
    LOG_NAME,
    OUTCOME_NAME,
    UPLOADS_DIR,
    append_log,
    move_uploads,
    read_outcome,
    remove_file,
)
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
    CANCELLED_MESSAGE,
    DONE,
    ERROR,
    QUEUED,
    RUNNING,
    UNFINISHED,
    Training,
    TrainingStore,
    write_private,
)
from deepaas.training.store_thread import store_failure

if TYPE_CHECKING:
    from deepaas.training.backends import ServiceLink

#: The logger keeps the name it had before the backends moved, so that a
#: logging set-up (or a search of the logs) naming it still finds its lines.
LOG = logging.getLogger("deepaas.training.slurm")

T = TypeVar("T")

OWNER_PREFIX = "slurm:"
CANCEL_FILE = "cancel-requested.json"
#: The state of a job that no SLURM command knows any more and that left no
#: report of its end (deepaas's word, not SLURM's).
FORGOTTEN = "UNKNOWN"
#: How long a job SLURM no longer lists may take to show up (just submitted).
_FORGOTTEN_AFTER = 30.0


def slurm_job_id(training: Training) -> str | None:
    """The SLURM job id of a SLURM training, None for a local one."""
    if training.owner.startswith(OWNER_PREFIX):
        return training.owner[len(OWNER_PREFIX) :]
    return None


@dataclasses.dataclass
class SlurmTraining(Training):
    """A training run by SLURM; its JSON adds the job id, node and job state.

    ``state`` is SLURM's state of the job when a server last asked (every
    job starts ``PENDING``); once the training has ended, the state that
    ended it.  ``reason`` is SLURM's reason for it, e.g. why a job waits.
    """

    slurm_job_id: str = ""
    slurm_node: str | None = None

    def to_json(self) -> dict[str, Any]:
        body = super().to_json()
        body["slurm"] = {
            "job_id": self.slurm_job_id,
            "node": self.slurm_node,
            "state": self.scheduler_state,
            "reason": self.scheduler_reason,
        }
        return body


def with_slurm_details(training: Training, state_dir: Path) -> Training:
    """``training`` as answered: with its SLURM job id and node if it has them."""
    job_id = slurm_job_id(training)
    if job_id is None:
        return training
    status = read_status(state_dir / training.job_dir)
    fields = {f.name: getattr(training, f.name) for f in dataclasses.fields(Training)}
    return SlurmTraining(
        **fields, slurm_job_id=job_id, slurm_node=status.get("node") or None
    )


def _ended_message(job_id: str, info: JobInfo, detail: str) -> str:
    reason = f", reason {info.reason}" if info.reason not in ("", "None") else ""
    code = f", exit code {info.exit_code}" if info.exit_code else ""
    return f"SLURM job {job_id} ended {info.state}{reason}{code}: {detail}"


def settle(job_id: str, info: JobInfo, job_dir: Path) -> tuple[str, Any, str | None]:
    """Status, output and message of a training whose job has ended."""
    outcome = read_outcome(job_dir / OUTCOME_NAME) or {}
    if outcome.get("status") == DONE:
        return DONE, outcome.get("output"), None
    if (job_dir / CANCEL_FILE).exists():
        return CANCELLED, None, f"{CANCELLED_MESSAGE} (SLURM job {job_id})"
    if info.state == "CANCELLED":
        return (
            CANCELLED,
            None,
            (
                f"SLURM job {job_id} was cancelled outside deepaas (e.g. by scancel "
                "or an administrator)"
            ),
        )
    if info.state == "TIMEOUT":
        return ERROR, None, _ended_message(job_id, info, "it ran past its time limit")
    if info.state == "OUT_OF_MEMORY":
        return (
            ERROR,
            None,
            _ended_message(job_id, info, "it used more memory than it asked for"),
        )
    if outcome.get("status") == ERROR:
        return (
            ERROR,
            None,
            _ended_message(
                job_id, info, str(outcome.get("message", "the training failed"))
            ),
        )
    detail = "the training left no result"
    last = _last_line(job_dir / OUTPUT_FILE)
    if last:
        detail += f"; the job's output ends with: {last}"
    return ERROR, None, _ended_message(job_id, info, detail)


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 4096))
            lines = handle.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip()[:500] if lines else ""


class SlurmBackend:
    """Submits trainings as SLURM jobs and records what becomes of them."""

    scheduler: str | None = "slurm"

    def __init__(
        self,
        state_dir: Path,
        store: TrainingStore,
        settings: SlurmSettings,
        *,
        jobs_dir: str,
        cancel_grace: float,
        log_level: int,
        max_log_bytes: int = 0,
        gpus_of: Callable[[str], int] = lambda model: 0,
        client: SlurmClient | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.store = store
        self.settings = settings
        self.jobs_dir = jobs_dir
        self.cancel_grace = cancel_grace
        self.log_level = log_level
        self.max_log_bytes = max_log_bytes
        self.gpus_of = gpus_of
        self.client = client or SlurmClient()
        self._poller: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._refreshing = asyncio.Lock()
        #: Runs store and disk work off the event loop (the service sets its
        #: own, which bounds the wait and answers 503/507).
        self.io: Callable[..., Awaitable[Any]] = _in_thread

    def describe(self) -> str:
        # SLURM's queue decides how many run: no local limit applies.
        return "run as SLURM jobs, as many at once as SLURM's queue allows"

    async def start(self, link: ServiceLink | None = None) -> None:
        """Settle what happened while no server watched, then keep watching.

        ``link``: the service's, whose ``io`` then bounds the store's waits
        and answers 503/507 (its store and directory are the ones this
        backend was built with).  A controller that does not answer now is
        no reason not to serve: the poller asks again.
        """
        if link is not None:
            self.io = link.io
        try:
            await self.refresh()
        except SlurmUnavailable as exc:
            LOG.warning("trainings: %s; asking again later", exc.message)
        self._poller = asyncio.create_task(self._poll(), name="deepaas-slurm-poll")

    async def close(self) -> None:
        """Stop watching; the jobs themselves go on."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
            self._wake.clear()
            try:
                await self.refresh()
            except SlurmUnavailable as exc:
                LOG.warning("trainings: %s; asking again later", exc.message)
            except Exception:
                LOG.exception("trainings: asking SLURM about the jobs failed")

    # -- submitting -------------------------------------------------------------

    async def submit(
        self, spec: ModelSpec, raw: RawArguments, args: dict[str, Any]
    ) -> Training:
        """Write the job directory, submit the job, record the training.

        A disk that cannot take the job's files is a 507, as for the store.
        """
        try:
            return await self._submit(spec, raw, args)
        except OSError as exc:  # writing its job files on a full disk
            failure = store_failure(exc, self.store.path)
            if failure is None:
                raise
            raise failure from exc

    async def _submit(
        self, spec: ModelSpec, raw: RawArguments, args: dict[str, Any]
    ) -> Training:
        training_id = uuid_mod.uuid4().hex
        job_dir = self.state_dir / self.jobs_dir / training_id
        job_id = None
        try:
            job_raw = await self.io(_make_job_dir, raw, job_dir)
            log_file = job_dir / LOG_NAME
            child = ChildJob(
                uuid=training_id,
                spec=spec,
                raw=job_raw,
                job_dir=str(job_dir),
                log_file=str(log_file),
                outcome_file=str(job_dir / OUTCOME_NAME),
                env={},
                grace=self.cancel_grace,
                log_level=self.log_level,
                max_log_bytes=self.max_log_bytes,
            )
            write_private(job_dir / JOB_FILE, pickle.dumps(child))
            script = job_dir / SCRIPT_FILE
            write_private(
                script,
                job_script(
                    self.settings,
                    name=f"deepaas-{spec.name}-{training_id[:8]}",
                    job_dir=job_dir,
                    output=job_dir / OUTPUT_FILE,
                    gpus=self.gpus_of(spec.name),
                ).encode(),
            )
            log_file.touch(mode=0o600)
            job_id = await self.client.submit(script)
            append_log(log_file, f"submitted to SLURM as job {job_id}")
            submitted = Training.submitted(
                uuid=training_id,
                model=spec.name,
                args=args,
                job_dir=str(job_dir.relative_to(self.state_dir)),
                owner=OWNER_PREFIX + job_id,
            )
            # Running to DEEPaaS clients, pending to SLURM (where every
            # accepted job starts): see the module's docstring.
            await self.io(
                self.store.insert,
                dataclasses.replace(
                    submitted, status=RUNNING, scheduler_state="PENDING"
                ),
            )
        except BaseException:
            if job_id is not None:
                await self.client.cancel(job_id)
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        LOG.info(
            "training %s of model %r submitted as SLURM job %s",
            training_id,
            spec.name,
            job_id,
        )
        self._wake.set()
        training = await self.io(self.store.get, training_id)
        assert training is not None
        return with_slurm_details(training, self.state_dir)

    # -- watching -----------------------------------------------------------------

    async def refresh(self, only: str | None = None) -> None:
        """Record what SLURM says of every unfinished SLURM training."""
        async with self._refreshing:
            trainings = {
                job_id: t
                for t in await self.io(self.store.unfinished)
                if (job_id := slurm_job_id(t)) is not None
                and (only is None or t.uuid == only)
            }
            if not trainings:
                return
            infos = await self.client.query(list(trainings))
            for job_id, training in trainings.items():
                await self.io(self._apply, job_id, training, infos.get(job_id))

    def _apply(self, job_id: str, training: Training, info: JobInfo | None) -> None:
        """Record what SLURM says of one job (blocking: on the store's thread)."""
        job_dir = self.state_dir / training.job_dir
        status = read_status(job_dir)
        if info is None:
            # SLURM has forgotten the job (no accounting database to ask).
            if status.get("state") == "ended":
                failed = "COMPLETED" if status.get("exitcode") == 0 else "FAILED"
                info = JobInfo(job_id, failed, exit_code=str(status.get("exitcode")))
            elif time.time() - training.submitted_at < _FORGOTTEN_AFTER:
                return
            else:
                info = JobInfo(job_id, FORGOTTEN, "SLURM no longer knows the job")
        seen = {"scheduler_state": info.state, "scheduler_reason": info.shown_reason}
        if not info.ended and info.state != FORGOTTEN:
            changes: dict[str, Any] = {
                name: value
                for name, value in seen.items()
                if getattr(training, name) != value
            }
            if training.status == QUEUED:  # recorded so by an earlier deepaas
                changes["status"] = RUNNING
            if not info.pending and training.started_at is None:
                changes["started_at"] = status.get("started_at") or time.time()
            if changes:
                self.store.update(training.uuid, only_if=UNFINISHED, **changes)
            return
        state, output, message = settle(job_id, info, job_dir)
        finished_at = status.get("ended_at") or time.time()
        started_at = training.started_at or status.get("started_at") or finished_at
        if self.store.update(
            training.uuid,
            only_if=UNFINISHED,
            status=state,
            output=output,
            message=message,
            started_at=started_at,
            finished_at=finished_at,
            **seen,
        ):
            ending = f"training ended: {state}" + (f" ({message})" if message else "")
            append_log(job_dir / LOG_NAME, ending)
            LOG.info(
                "training %s of model %r ended: %s%s",
                training.uuid,
                training.model,
                state,
                f" ({message})" if message else "",
            )
            self._write_provenance(training.uuid, job_dir, status)
            shutil.rmtree(job_dir / UPLOADS_DIR, ignore_errors=True)
            remove_file(job_dir / OUTCOME_NAME)

    def _write_provenance(
        self, uuid: str, job_dir: Path, status: dict[str, Any]
    ) -> None:
        """The training's provenance record: its node and GPUs, as the job said."""
        training = self.store.get(uuid)
        spec = available_models().get(training.model) if training else None
        if training is None or spec is None:
            return
        host = this_host()
        if status.get("node"):
            host = dataclasses.replace(host, hostname=str(status["node"]))
        gpus = {"CUDA_VISIBLE_DEVICES": str(status.get("gpus") or "")}
        record_training(
            job_dir, training, spec=spec, host=host, devices=visible_devices(gpus),
            extra={"slurmJob": str(status.get("job_id") or slurm_job_id(training))},
        )  # fmt: skip

    # -- cancelling ---------------------------------------------------------------

    def known(self, training: Training) -> Training:
        """The record as stored: a SLURM training's end is written, never held."""
        return training

    async def cancel(self, training: Training) -> bool:
        """Cancel the training's job; return once SLURM says it has ended.

        A running job gets SIGTERM first (every process of the job) and
        ``--train-cancel-grace`` seconds to stop before ``scancel`` ends it
        (SLURM sends SIGKILL after its own ``KillWait``).  Answers False,
        doing nothing, for a training that has ended or is not SLURM's.
        """
        job_id = slurm_job_id(training)
        if job_id is None or training.finished:
            return False
        job_dir = self.state_dir / training.job_dir
        info = (await self.client.query([job_id])).get(job_id)
        if info is not None and not info.ended:
            # A job that ended before the request keeps the status it earned.
            await self.io(write_json, job_dir / CANCEL_FILE, {"at": time.time()})
            if info.pending:
                await self.client.cancel(job_id)
            else:
                append_log(
                    job_dir / LOG_NAME,
                    f"stopping (cancel): SIGTERM sent to SLURM job {job_id}; "
                    f"scancel follows after {self.cancel_grace:g} s",
                )
                await self.client.signal(job_id, "TERM")
                if not await self.client.wait_ended(job_id, self.cancel_grace):
                    await self.client.cancel(job_id)
            await self.client.wait_ended(job_id)
        await self.refresh(only=training.uuid)
        return True


async def _in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


def _make_job_dir(raw: RawArguments, job_dir: Path) -> RawArguments:
    """Create a training's directory (0700) and move its uploads in."""
    job_dir.mkdir(mode=0o700, parents=True)
    moved = move_uploads(raw, job_dir / UPLOADS_DIR)
    note_inputs(job_dir, moved)  # hashed as received, for the provenance record
    return moved


__all__ = [
    "SlurmBackend",
    "SlurmTraining",
    "slurm_job_id",
    "with_slurm_details",
]
