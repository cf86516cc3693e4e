"""Prediction jobs: ``POST .../predict/`` with ``Prefer: respond-async``.

A long prediction becomes a durable job (see docs/jobs.md): recorded in the
training store's file, run by the model's workers (or as a SLURM job),
polled, cancelled and its result fetched later.  Nothing here imports
aiohttp: :mod:`deepaas.api.jobs` is the HTTP face of the
:class:`PredictJobService`.
"""

from deepaas.jobs.config import job_service_from_settings
from deepaas.jobs.errors import (
    InvalidJobRequest,
    JobBusy,
    JobHasNoResult,
    JobNotFinished,
    JobNotFound,
    JobsNotConfigured,
    TooManyJobs,
    TooManyStoredJobs,
)
from deepaas.jobs.service import PredictJobService
from deepaas.jobs.store import INTERRUPTED, JobStore, PredictJob

__all__ = [
    "INTERRUPTED",
    "InvalidJobRequest",
    "JobBusy",
    "JobHasNoResult",
    "JobNotFinished",
    "JobNotFound",
    "JobStore",
    "JobsNotConfigured",
    "PredictJob",
    "PredictJobService",
    "TooManyJobs",
    "TooManyStoredJobs",
    "job_service_from_settings",
]
