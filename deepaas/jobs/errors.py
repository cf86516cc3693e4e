"""The prediction jobs' own domain errors (each maps to its HTTP status)."""

from __future__ import annotations

from deepaas.exceptions import DeepaasError, QueueFull


class JobNotFound(DeepaasError):
    """No such prediction job of this model (404)."""

    status = 404


class InvalidJobRequest(DeepaasError):
    """A malformed job id or ``Prefer`` request (400)."""

    status = 400


class JobNotFinished(DeepaasError):
    """The job's result was asked for before the job ended (409)."""

    status = 409


class JobHasNoResult(DeepaasError):
    """The job ended without a result: cancelled or interrupted (409)."""

    status = 409


class JobBusy(DeepaasError):
    """The job is run by another server sharing the state directory (409)."""

    status = 409


class JobsNotConfigured(DeepaasError):
    """The server was built without a prediction job service (501)."""

    status = 501


class TooManyJobs(QueueFull):
    """``--max-predict-jobs`` unfinished jobs are held (503, Retry-After)."""

    # A place frees when a long prediction ends: seconds, not milliseconds.
    retry_after = 10


class TooManyStoredJobs(QueueFull):
    """``--max-stored-predict-jobs`` jobs are recorded (503, Retry-After).

    Places free as clients DELETE finished jobs or the retention
    (``--keep-trainings``, ``--keep-trainings-days``) forgets them.
    """

    retry_after = 60


__all__ = [
    "InvalidJobRequest",
    "JobBusy",
    "JobHasNoResult",
    "JobNotFinished",
    "JobNotFound",
    "JobsNotConfigured",
    "TooManyJobs",
    "TooManyStoredJobs",
]
