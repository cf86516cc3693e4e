"""The model contract: finding, loading and wrapping models.

What a model offers and how it is called (arguments, description, uploaded
files, the 2.x compatibility modules).  Running it is :mod:`deepaas.engine`'s
job; nothing here imports the engine or aiohttp.
"""

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
