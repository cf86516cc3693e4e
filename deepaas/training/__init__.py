"""Durable, cancellable, observable trainings (see docs/trainings.md).

Nothing here imports aiohttp: :mod:`deepaas.api.train` is the HTTP face of
the :class:`TrainingService`.
"""

from deepaas.training.config import training_service_from_settings
from deepaas.training.errors import (
    InvalidTrainingRequest,
    StateDirUnusable,
    TrainingBusy,
    TrainingsNotConfigured,
)
from deepaas.training.service import TrainingService
from deepaas.training.settings import (
    PredictJobSettings,
    SlurmSettings,
    TrainingSettings,
    default_state_dir,
)
from deepaas.training.store import (
    CANCELLED,
    DONE,
    ERROR,
    QUEUED,
    RUNNING,
    Training,
    TrainingStore,
    parse_uuid,
)

__all__ = [
    "CANCELLED",
    "DONE",
    "ERROR",
    "QUEUED",
    "RUNNING",
    "InvalidTrainingRequest",
    "PredictJobSettings",
    "SlurmSettings",
    "StateDirUnusable",
    "Training",
    "TrainingBusy",
    "TrainingService",
    "TrainingSettings",
    "TrainingStore",
    "TrainingsNotConfigured",
    "default_state_dir",
    "parse_uuid",
    "training_service_from_settings",
]
