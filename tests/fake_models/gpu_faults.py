"""Models whose GPU fails in a call, as torch reports it.

No GPU is needed: they raise torch's own ``AcceleratorError`` with the text
a device-side assert carries (what torch >= 2.8 raises), or the
``RuntimeError`` older torch raised for an illegal memory access.  torch is
imported only when a call asks to fail, as a model would meet the error
only in its forward pass.
"""

from __future__ import annotations

import os
import time
from typing import Any

from marshmallow import fields, validate

#: What torch says after a device-side assert (e.g. an index out of range
#: in a CUDA kernel).
ASSERT_TEXT = (
    "CUDA error: device-side assert triggered\n"
    "CUDA kernel errors might be asynchronously reported at some other API "
    "call, so the stacktrace below might be incorrect.\n"
    "For debugging consider passing CUDA_LAUNCH_BLOCKING=1\n"
    "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n"
)
#: What torch < 2.8 said after an illegal memory access (a RuntimeError).
ILLEGAL_ACCESS_TEXT = (
    "CUDA error: an illegal memory access was encountered\n"
    "CUDA kernel errors might be asynchronously reported at some other API "
    "call, so the stacktrace below might be incorrect.\n"
)

#: ``fail`` values: how the GPU fails ("" for not at all).
FAULTS = ("", "assert", "illegal-access")


def raise_gpu_fault(fault: str) -> None:
    """Raise what torch raises when the GPU fails so (``fault`` in FAULTS)."""
    if fault == "assert":
        import torch

        raise torch.AcceleratorError(ASSERT_TEXT)
    if fault == "illegal-access":
        raise RuntimeError(ILLEGAL_ACCESS_TEXT)


class GpuFault:
    """``fail=assert`` or ``fail=illegal-access`` makes the GPU fail; otherwise
    it answers its pid.  ``sleep`` (seconds, before failing or answering)
    keeps the worker busy, so that other calls queue behind.  Its training
    fails the same way."""

    def get_predict_args(self) -> dict[str, Any]:
        return {
            "fail": fields.Str(load_default="", validate=validate.OneOf(FAULTS)),
            "sleep": fields.Float(load_default=0.0),
        }

    def get_train_args(self) -> dict[str, Any]:
        return {"fail": fields.Str(load_default="", validate=validate.OneOf(FAULTS))}

    def predict(self, fail: str, sleep: float) -> dict[str, Any]:
        time.sleep(sleep)
        raise_gpu_fault(fail)
        return {"pid": os.getpid()}

    def train(self, fail: str) -> dict[str, Any]:
        raise_gpu_fault(fail)
        return {"trained": True}


class BatchedGpuFault:
    """A batch with any failing request fails as a whole (one forward pass
    over the batch); otherwise each request gets its pid and batch size."""

    max_batch_size = 4
    batch_timeout = 0.5

    def get_predict_args(self) -> dict[str, Any]:
        return {
            "fail": fields.Str(load_default="", validate=validate.OneOf(FAULTS)),
            "sleep": fields.Float(load_default=0.0),
        }

    def predict(self, fail: str, sleep: float) -> dict[str, Any]:
        return self.predict_batch([{"fail": fail, "sleep": sleep}])[0]

    def predict_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        time.sleep(max(r["sleep"] for r in requests))
        for request in requests:
            raise_gpu_fault(request["fail"])
        return [{"pid": os.getpid(), "batch": len(requests)} for _ in requests]
