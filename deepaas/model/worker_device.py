"""Which device model code should use: the public helper for model authors.

deepaas binds each worker process to its GPU(s) before the model is
imported (``CUDA_VISIBLE_DEVICES``), so inside a worker the model's GPU is
always ``cuda:0``.  Model code asks here instead of hard-coding it, and the
same code runs on a GPU worker, a CPU worker and a laptop.

Example::

    import deepaas

    class Model:
        resources = {"gpus": 1, "gpu": "preferred"}

        def warm(self):
            self.net = build_net().to(deepaas.torch_device())
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: Environment variable telling model code which device is its own (the
#: engine sets it in each worker it places on a GPU).
DEVICE_ENV = "DEEPAAS_DEVICE"


def device() -> str:
    """The device this process should compute on: ``"cuda:0"`` or ``"cpu"``.

    In a worker that deepaas placed (a model that declared ``resources``),
    this is the placement.  Elsewhere (in-process mode, ``deepaas-cli``, a
    model that declared nothing) it is ``"cuda:0"`` when torch is installed
    and sees a GPU, else ``"cpu"``.
    """
    placed = os.environ.get(DEVICE_ENV)
    if placed:
        return placed
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return "cpu"
    torch: Any = sys.modules.get("torch")
    if torch is None:
        try:
            import torch  # type: ignore[import-not-found, no-redef]
        except ImportError:
            return "cpu"
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def torch_device() -> Any:
    """:func:`device` as a ``torch.device`` (imports torch)."""
    import torch  # type: ignore[import-not-found]

    return torch.device(device())


__all__ = ["DEVICE_ENV", "device", "torch_device"]
