"""Reports where it computes: the GPU check's witness of each worker's placement.

``predict`` answers the worker's pid, what it sees (``CUDA_VISIBLE_DEVICES``,
torch's device count, current device, the device's name and UUID) and where
its tensors live, after real work on that device: a matrix product and, for
an uploaded file, the sum of its bytes computed there (the check compares it
with its own).  ``train`` fits a small regression on the device.
"""

from __future__ import annotations

import os
import time
from typing import Any

from marshmallow import fields

import deepaas

resources = {"gpus": 1, "gpu": "preferred"}


def get_metadata():
    return {"name": "bench_gpu_probe", "description": "Where does it compute?"}


def warm():
    _witness(64)


def get_predict_args():
    return {
        "file": fields.Field(
            required=False,
            metadata={"type": "file", "location": "form", "description": "any file"},
        ),
        "size": fields.Int(load_default=256, metadata={"description": "matmul size"}),
        "hold_ms": fields.Int(
            load_default=0, metadata={"description": "stay busy this long afterwards"}
        ),
    }


def predict(**kwargs):
    import torch

    answer = _witness(kwargs["size"])
    upload = kwargs.get("file")
    if upload is not None:
        with open(upload.filename, "rb") as handle:
            data = handle.read()
        on_device = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(
            deepaas.torch_device()
        )
        answer["checksum"] = int(on_device.to(torch.int64).sum().item())
        answer["checksum_device"] = str(on_device.device)
    if kwargs["hold_ms"] > 0:
        time.sleep(kwargs["hold_ms"] / 1000)
    return answer


def get_train_args():
    return {"steps": fields.Int(load_default=300, metadata={"description": "steps"})}


def train(**kwargs):
    import torch

    device = deepaas.torch_device()
    torch.manual_seed(0)
    inputs = torch.randn(4096, 64, device=device)
    target = inputs @ torch.randn(64, 1, device=device)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1)
    ).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    started = time.perf_counter()
    losses = []
    for _ in range(kwargs["steps"]):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(net(inputs), target)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return {
        **_where(),
        "parameters_device": str(next(net.parameters()).device),
        "steps": len(losses),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "seconds": round(time.perf_counter() - started, 3),
    }


def _witness(size: int) -> dict[str, Any]:
    import torch

    device = deepaas.torch_device()
    left = torch.ones(size, size, device=device)
    product = left @ left
    return {
        **_where(),
        "tensor_device": str(product.device),
        "product_corner": float(product[0, 0].item()),
    }


def _where() -> dict[str, Any]:
    import torch

    answer: dict[str, Any] = {
        "pid": os.getpid(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "deepaas_device": deepaas.device(),
        "device_count": torch.cuda.device_count(),
    }
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        answer["current_device"] = torch.cuda.current_device()
        answer["device_name"] = properties.name
        answer["device_uuid"] = str(getattr(properties, "uuid", ""))
    return answer
