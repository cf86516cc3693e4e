"""The training service's own domain errors (each maps to its HTTP status).

:class:`deepaas.exceptions.TrainingNotFound` (404) covers unknown trainings;
these cover what only trainings can get wrong.
"""

from __future__ import annotations

from deepaas.exceptions import DeepaasError, MethodNotImplemented, QueueFull


class InvalidTrainingRequest(DeepaasError):
    """A malformed training uuid or log query (400)."""

    status = 400


class TrainingBusy(DeepaasError):
    """The training is run by another server sharing the state directory (409)."""

    status = 409


class TrainingsNotConfigured(MethodNotImplemented):
    """The server was built without a training service (501)."""


class TooManyTrainings(QueueFull):
    """The server holds ``--max-trainings`` unfinished trainings (503, Retry-After)."""

    # A place frees when a training ends, minutes away rather than the
    # moment a prediction's queue moves: a client looping on 1 s would
    # only add load.
    retry_after = 30


class TrainingStoreBusy(QueueFull):
    """The training store stayed locked (another process writes) past the wait (503).

    Several servers may share one state directory, so a short lock is
    normal; one held longer than :data:`~deepaas.training.store.STORE_WAIT`
    is answered at once rather than holding the request.
    """

    retry_after = 5


class TrainingStoreUnusable(DeepaasError):
    """The training store cannot be read or written: e.g. not a database (503)."""

    status = 503
    retry_after = 30


class InsufficientStorage(DeepaasError):
    """The state directory's disk is full: nothing could be recorded (507)."""

    status = 507
    retry_after = 60


class StateDirUnusable(DeepaasError):
    """The state directory cannot be created, written or locked."""

    status = 500


__all__ = [
    "InsufficientStorage",
    "InvalidTrainingRequest",
    "StateDirUnusable",
    "TooManyTrainings",
    "TrainingBusy",
    "TrainingStoreBusy",
    "TrainingStoreUnusable",
    "TrainingsNotConfigured",
]
