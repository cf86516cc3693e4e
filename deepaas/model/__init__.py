"""Finding, wrapping and running models; nothing here imports aiohttp."""

from deepaas.model.files import UploadedFile
from deepaas.model.loading import (
    DEMO_MODEL_NAME,
    MODEL_NAMESPACE,
    ModelSpec,
    available_models,
    load_model,
    select_models,
)
from deepaas.model.wrapper import ModelWrapper, PredictOutcome, RawArguments

__all__ = [
    "DEMO_MODEL_NAME",
    "MODEL_NAMESPACE",
    "ModelSpec",
    "ModelWrapper",
    "PredictOutcome",
    "RawArguments",
    "UploadedFile",
    "available_models",
    "load_model",
    "select_models",
]
