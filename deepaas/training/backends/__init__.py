"""Where trainings run: the backends a :class:`TrainingService` hands them to.

The service keeps what every training has, wherever it runs: the store,
the state directory and its lock, listing, logs, forgetting and retention.
A backend runs the trainings: :class:`~.local.LocalBackend` in processes of
this server (``--train-backend local``), :class:`~.slurm.SlurmBackend` as
SLURM batch jobs (``--train-backend slurm``).  Both satisfy
:class:`TrainingBackend`, the only thing the service knows of them.

A record says who runs it through its ``owner``: the id of the server that
runs it, or ``slurm:<job id>`` for a SLURM job.  What follows from the
owner alone (a SLURM training is answered with its job's details, and
cancelled only by a server with the SLURM backend) holds whichever backend
this server uses, so it lives here, not in a backend.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from deepaas.model.loading import ModelSpec
from deepaas.model.wrapper import RawArguments
from deepaas.training.backends.slurm.backend import slurm_job_id, with_slurm_details
from deepaas.training.errors import TrainingBusy
from deepaas.training.store import Training, TrainingStore

#: Runs blocking store and disk work off the event loop; failures of the
#: store or its disk come out as 503 or 507 errors.
Io = Callable[..., Awaitable[Any]]


@dataclasses.dataclass(frozen=True)
class ServiceLink:
    """What a service lends its backend when it starts it.

    ``store`` and ``io`` are the service's own, so that a backend's writes
    wait as long as a request's and fail the same way; ``server_id`` is the
    owner of the trainings this server runs itself; ``prune`` applies the
    retention rules once a training's end is recorded.
    """

    state_dir: Path
    jobs_dir: str
    store: TrainingStore
    server_id: str
    io: Io
    prune: Callable[[], Awaitable[None]]


@runtime_checkable
class TrainingBackend(Protocol):
    """What a :class:`~deepaas.training.service.TrainingService` asks of the
    part that runs its trainings."""

    @property
    def scheduler(self) -> str | None:
        """The batch scheduler whose job states its records carry
        (``"slurm"``, counted by ``/metrics``); None when this server runs
        its trainings itself."""
        ...

    def describe(self) -> str:
        """How many trainings run at once, for the service's start-up line."""
        ...

    async def start(self, link: ServiceLink) -> None:
        """Take the service's store and state directory; settle what ran
        while no server watched and start watching what runs."""
        ...

    async def close(self) -> None:
        """Stop what this server must not leave behind; the service then
        releases the state directory."""
        ...

    async def submit(
        self, spec: ModelSpec, raw: RawArguments, args: dict[str, Any]
    ) -> Training:
        """Record a training of ``spec`` with the validated ``args`` (JSON)
        and start or queue it; answer its record.  The uploads in ``raw``
        are moved into the training's directory."""
        ...

    async def cancel(self, training: Training) -> bool:
        """Stop ``training`` if this backend runs it, returning once it has
        ended; answer whether it did (False: not one of its trainings)."""
        ...

    def known(self, training: Training) -> Training:
        """``training`` as answered: the stored record plus what this backend
        knows of it and could not yet write."""
        ...


def answered(training: Training, state_dir: Path) -> Training:
    """The stored record as any server answers it (blocking: reads the job's
    files): a SLURM training comes with its job id and node."""
    return with_slurm_details(training, state_dir)


def run_elsewhere(training: Training) -> TrainingBusy:
    """The error for cancelling an unfinished training this server does not run."""
    if slurm_job_id(training) is not None:
        return TrainingBusy(
            f"training {training.uuid} is run by SLURM; "
            "cancel it on a server with --train-backend slurm"
        )
    return TrainingBusy(
        f"training {training.uuid} is run by another server "
        f"(pid {training.owner_pid} on {training.owner_host!r}) that "
        "shares this state directory; cancel it there"
    )


__all__ = ["Io", "ServiceLink", "TrainingBackend", "answered", "run_elsewhere"]
