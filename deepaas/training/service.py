"""TrainingService: queue, run, cancel, watch and remember trainings.

A training is a record in the :class:`~deepaas.training.store.TrainingStore`
plus, while it runs, whatever its backend runs it in
(:mod:`deepaas.training.backends`): a process of this server
(:mod:`~deepaas.training.backends.local`, the default) or a SLURM job
(:mod:`~deepaas.training.backends.slurm`).  The service holds what every
training has, wherever it runs: the state directory and its store, the
records as answered, the logs, forgetting and retention.  Everything a
training leaves on disk lives in its job directory
``<state_dir>/trainings/<uuid>/``: ``training.log``, the copied
``uploads/`` (removed when it ends) and ``outcome.json``.

Several servers may share one state directory.  Each runs only the
trainings submitted to it, and holds a lock (see
:mod:`deepaas.training._processes`) that tells the others whether it is
alive: the unfinished trainings of a server that is gone are marked as
interrupted, never left ``running`` forever.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import logging
import shutil
import sqlite3
import uuid as uuid_mod
from pathlib import Path
from typing import Any

from deepaas.exceptions import DeepaasError, TrainingNotFound
from deepaas.model.loading import ModelSpec
from deepaas.model.wrapper import RawArguments
from deepaas.training import _processes
from deepaas.training._housekeeping import (
    INTERRUPTED_BY_RESTART as INTERRUPTED_BY_RESTART,  # where callers find it
)
from deepaas.training._housekeeping import (
    SERVERS_DIR,
    apply_retention,
    interrupt_orphans,
)
from deepaas.training._jobdir import LOG_NAME, valid_text
from deepaas.training.backends import (
    ServiceLink,
    TrainingBackend,
    answered,
    run_elsewhere,
)
from deepaas.training.backends.local import LocalBackend, check_not_negative
from deepaas.training.errors import (
    InsufficientStorage,
    InvalidTrainingRequest,
    StateDirUnusable,
    TrainingStoreBusy,
    TrainingStoreUnusable,
)
from deepaas.training.logs import LogChunk, read_log
from deepaas.training.settings import DEFAULT_MAX_BYTES, check_max_bytes
from deepaas.training.store import (
    DATABASE_NAME,
    STORE_WAIT,
    Training,
    TrainingStore,
    make_private_dir,
    parse_uuid,
)
from deepaas.training.store_thread import StoreThread

LOG = logging.getLogger(__name__)

JOBS_DIR = "trainings"
#: How long start-up waits for a store that another server holds.
OPEN_WAIT = 30.0


class TrainingService:
    """Hands trainings to its backend and records them durably.

    The backend runs them: a :class:`~deepaas.training.backends.local.
    LocalBackend` (the default, with its defaults; how many run at once,
    their timeout and cancel grace are its options) or any other
    :class:`~deepaas.training.backends.TrainingBackend`, such as the
    SLURM one.  The service's own options are those of every training
    wherever it runs: retention and the log cap.  Example (what
    ``deepaas-run`` does through :func:`training_service_from_settings`)::

        service = TrainingService(
            "/var/lib/deepaas", backend=LocalBackend(max_concurrent=2)
        )
        await service.start()
        training = await service.submit(spec, raw, args)
        ...
        await service.close()
    """

    def __init__(
        self,
        state_dir: Path | str,
        *,
        backend: TrainingBackend | None = None,
        keep: int = 0,
        keep_days: float = 0.0,
        max_log_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        check_not_negative(
            (("--keep-trainings", keep), ("--keep-trainings-days", keep_days))
        )
        check_max_bytes(max_log_bytes)
        if backend is None:
            backend = LocalBackend(max_log_bytes=max_log_bytes)
        self.state_dir = Path(state_dir).expanduser().absolute()
        #: Where trainings run (``--train-backend``).
        self.backend: TrainingBackend = backend
        self.keep = keep
        self.keep_days = keep_days
        self.max_log_bytes = max_log_bytes
        # A request waits at most STORE_WAIT for SQLite's lock (503 after).
        self.store = TrainingStore(
            self.state_dir / DATABASE_NAME, busy_timeout=STORE_WAIT
        )
        #: Why the store cannot be used now (for /ready), None while it can.
        self.problem: str | None = None
        self._thread: StoreThread | None = None
        self.server_id = uuid_mod.uuid4().hex
        self._lock = _processes.ServerLock(self.state_dir / SERVERS_DIR, self.server_id)
        self._started = False
        self._closing = False

    # -- life cycle -----------------------------------------------------------

    async def start(self) -> None:
        """Open the store, claim this server's lock, settle earlier trainings,
        start the backend."""
        self._thread = StoreThread()
        try:
            await asyncio.to_thread(self._open)
        except sqlite3.DatabaseError as exc:
            self._thread.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise self._unusable(exc) from None
            raise StateDirUnusable(
                f"the training store {str(self.store.path)!r} is unusable: {exc}; "
                "move it away (a new, empty one is made) or use another "
                "--state-dir, or serve without trainings (--train-endpoint false)"
            ) from None
        except (OSError, RuntimeError) as exc:
            self._thread.close()
            raise self._unusable(exc) from None
        self._started = True
        interrupted = await self._io(self.reconcile)
        if interrupted:
            LOG.warning("%d training(s) of a stopped server settled", len(interrupted))
        await self._prune()
        await self.backend.start(
            ServiceLink(
                state_dir=self.state_dir,
                jobs_dir=JOBS_DIR,
                store=self.store,
                server_id=self.server_id,
                io=self._io,
                prune=self._prune,
            )
        )
        LOG.info("trainings: state in %s, %s", self.state_dir, self.backend.describe())

    def _open(self) -> None:
        """Create the state directory and the store; claim this server's lock."""
        make_private_dir(self.state_dir)  # 0700: trainings are private
        make_private_dir(self.state_dir / JOBS_DIR)
        # Start-up may wait longer than a request for another server's lock.
        TrainingStore(self.store.path, busy_timeout=OPEN_WAIT).create()
        self._lock.acquire()

    def _unusable(self, exc: BaseException) -> StateDirUnusable:
        return StateDirUnusable(
            f"cannot use the state directory {str(self.state_dir)!r} "
            f"(--state-dir): {exc}"
        )

    async def _io(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn`` on the store's thread: the event loop never waits on SQLite or
        the disk.  Failures of either are answered 503 or 507 (and an unusable
        store is remembered for /ready)."""
        if self._thread is None:
            raise StateDirUnusable("the training service is not running")
        try:
            result = await self._thread.run(
                self.store.path, functools.partial(fn, *args, **kwargs)
            )
        except TrainingStoreUnusable as exc:
            self.problem = exc.message
            raise
        except (TrainingStoreBusy, InsufficientStorage):
            raise
        self.problem = None
        return result

    async def close(self) -> None:
        """Stop what the backend must not leave behind (every training this
        server runs itself) and release the state directory."""
        if not self._started or self._closing:
            return
        self._closing = True
        await self.backend.close()
        self._lock.release()
        self._started = False
        if self._thread is not None:
            self._thread.close()
            self._thread = None

    # -- the API's operations ---------------------------------------------

    async def submit(
        self, spec: ModelSpec, raw: RawArguments, args: dict[str, Any]
    ) -> Training:
        """Record a training of ``spec`` and hand it to the backend; answer its
        record.

        ``args`` are the validated arguments as JSON (what is recorded);
        ``raw`` the arguments as received, whose uploads are moved into the
        training's own directory so that they outlive the request.
        """
        self._check_started()
        args = valid_text(args)  # a client's file name may not be UTF-8
        return await self.backend.submit(spec, raw, args)

    async def list(self, model: str) -> list[Training]:
        """Every recorded training of ``model``, oldest first."""
        self._check_started()
        trainings = await self._io(self._list, model)
        return [self.backend.known(t) for t in trainings]

    def _list(self, model: str) -> builtins.list[Training]:
        self.reconcile()
        return [answered(t, self.state_dir) for t in self.store.list(model)]

    async def get(self, model: str, training_id: str) -> Training:
        """One training of ``model``; 400 for a malformed uuid, 404 if unknown."""
        self._check_started()
        uuid = parse_uuid(training_id)
        return self.backend.known(await self._io(self._get, model, uuid))

    def _get(self, model: str, uuid: str) -> Training:
        self.reconcile()
        return answered(self._record(model, uuid), self.state_dir)

    async def delete(self, model: str, training_id: str) -> Training:
        """Cancel an unfinished training, or forget a finished one and its logs.

        Cancelling answers once the backend says the training has ended.
        """
        training = await self.get(model, training_id)
        if await self.backend.cancel(training):
            return await self.get(model, training.uuid)
        if not training.finished:
            raise run_elsewhere(training)
        await self._io(self._forget, training)
        return training

    def _forget(self, training: Training) -> None:
        if self.store.delete(training.uuid):
            shutil.rmtree(self.state_dir / training.job_dir, ignore_errors=True)
            LOG.info("training %s of model %r forgotten", training.uuid, training.model)

    async def read_log(
        self,
        model: str,
        training_id: str,
        *,
        offset: int | None = None,
        tail: int | None = None,
    ) -> tuple[Training, LogChunk]:
        """The training and a part of its log (see :mod:`.logs` for offsets)."""
        training = await self.get(model, training_id)
        path = self.state_dir / training.job_dir / LOG_NAME
        try:
            chunk = await self._io(read_log, path, offset=offset, tail=tail)
        except ValueError as exc:
            raise InvalidTrainingRequest(str(exc)) from None
        return training, chunk

    def reconcile(self) -> builtins.list[str]:
        """Settle the unfinished trainings whose server is gone (blocking).

        Each gets the outcome its process left, or is marked as interrupted.
        """
        return interrupt_orphans(
            self.store, self.state_dir, self.server_id, self.max_log_bytes
        )

    # -- helpers --------------------------------------------------------------

    def _check_started(self) -> None:
        if not self._started or self._closing:
            raise StateDirUnusable("the training service is not running")

    def _record(self, model: str, training_id: str) -> Training:
        """The stored training (blocking: on the store's thread)."""
        training = self.store.get(training_id)
        if training is None or training.model != model:
            raise TrainingNotFound(f"model {model!r} has no training {training_id!r}")
        return training

    async def _prune(self) -> None:
        try:
            await self._io(
                apply_retention,
                self.store,
                self.state_dir,
                keep=self.keep,
                keep_days=self.keep_days,
            )
        except DeepaasError as exc:
            LOG.warning("trainings: applying the retention failed: %s", exc.message)
