"""Models whose calls run out of GPU memory, as torch reports it.

No GPU is needed: they raise torch's own ``OutOfMemoryError`` with the text
a CUDA allocation failure carries, which is what deepaas sees when a real
GPU is full.  torch is imported only when a call asks to fail, as a model
would meet the error only in its forward pass.
"""

from __future__ import annotations

import os
import time
from typing import Any

from marshmallow import fields

#: What torch says when an allocation does not fit (an H100's numbers).
TORCH_MESSAGE = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
    "capacity of 79.19 GiB of which 1.06 GiB is free."
)


def raise_out_of_memory() -> None:
    """Raise torch's real out-of-memory error, as a failed allocation does."""
    import torch

    raise torch.OutOfMemoryError(TORCH_MESSAGE)


class OutOfMemory:
    """``oom=true`` runs out of GPU memory; otherwise answers its pid.

    Its training fails the same way with ``oom=true``.
    """

    def get_predict_args(self) -> dict[str, Any]:
        return {"oom": fields.Bool(load_default=False)}

    def get_train_args(self) -> dict[str, Any]:
        return {"oom": fields.Bool(load_default=False)}

    def predict(self, oom: bool) -> dict[str, Any]:
        if oom:
            raise_out_of_memory()
        return {"pid": os.getpid()}

    def train(self, oom: bool) -> dict[str, Any]:
        if oom:
            raise_out_of_memory()
        return {"trained": True}


class BatchedOutOfMemory:
    """A batch with any ``oom=true`` request runs out of GPU memory as a whole
    (as one forward pass over the batch does); otherwise each request gets
    its pid and its batch's size.  ``sleep`` (seconds) keeps the worker
    busy, so that the requests sent meanwhile make up the next batch."""

    max_batch_size = 4
    batch_timeout = 0.5

    def get_predict_args(self) -> dict[str, Any]:
        return {
            "oom": fields.Bool(load_default=False),
            "sleep": fields.Float(load_default=0.0),
        }

    def predict(self, oom: bool, sleep: float) -> dict[str, Any]:
        return self.predict_batch([{"oom": oom, "sleep": sleep}])[0]

    def predict_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        time.sleep(max(r["sleep"] for r in requests))
        if any(r["oom"] for r in requests):
            raise_out_of_memory()
        return [{"pid": os.getpid(), "batch": len(requests)} for _ in requests]


class InferenceFailed(Exception):
    """A model's own error, raised from the framework's."""


class WrapsOutOfMemory(OutOfMemory):
    """Wraps the out-of-memory error in an exception of its own."""

    def predict(self, oom: bool) -> dict[str, Any]:
        try:
            return super().predict(oom)
        except RuntimeError as exc:
            raise InferenceFailed("inference failed on the batch") from exc


class Pid:
    """Another model on the same server: answers its pid, never imports torch."""

    def predict(self) -> dict[str, Any]:
        return {"pid": os.getpid()}
