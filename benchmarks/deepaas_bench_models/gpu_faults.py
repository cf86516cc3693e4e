"""Fails on request as GPU code fails: the GPU check's faults.

``mode=fill`` takes the GPU's memory in chunks until the allocator refuses,
as a model given too large an input does; the error ends the call.  On the
CPU (the check's rehearsal) it asks for one impossible block instead, which
the allocator refuses at once: filling a machine's RAM would harm it.

``mode=assert`` indexes past a tensor's end on the GPU: the kernel's
device-side assert breaks the process's CUDA context for good (every later
CUDA call in it fails).  On the CPU the same indexing is an ordinary
``IndexError``.

``mode=small`` is an ordinary call that reports the worker's pid and GPU
memory, after holding the worker ``hold_ms`` (to reach every worker).
"""

from __future__ import annotations

import os
import time

from marshmallow import fields, validate

import deepaas

resources = {"gpus": 1, "gpu": "preferred"}

#: Never more chunks than this, whatever the GPU's size.
MAX_CHUNKS = 4096


def get_metadata():
    return {"name": "bench_gpu_faults", "description": "Fails as GPU code fails."}


def get_predict_args():
    return {
        "mode": fields.Str(
            load_default="small", validate=validate.OneOf(["fill", "assert", "small"])
        ),
        "chunk_mib": fields.Int(load_default=1024, validate=validate.Range(min=1)),
        "hold_ms": fields.Int(load_default=0, validate=validate.Range(min=0)),
    }


def predict(**kwargs):
    import torch

    device = deepaas.torch_device()
    if kwargs["mode"] == "fill":
        if device.type != "cuda":
            torch.empty(1 << 50, dtype=torch.uint8)  # refused at once
        held = []
        for _ in range(MAX_CHUNKS):
            held.append(
                torch.empty(kwargs["chunk_mib"] << 20, dtype=torch.uint8, device=device)
            )
        return {"chunks": len(held), "note": "the GPU never ran out"}
    if kwargs["mode"] == "assert":
        values = torch.zeros(4, device=device)
        past_the_end = torch.tensor([10], device=device)
        return {"value": float(values[past_the_end].sum().item())}
    block = torch.ones(64 << 20, dtype=torch.uint8, device=device)
    answer = {"pid": os.getpid(), "device": str(block.device), "sum": int(block.sum())}
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info()
        answer.update(
            reserved_mib=torch.cuda.memory_reserved() >> 20,
            free_mib=free >> 20,
            total_mib=total >> 20,
        )
    if kwargs["hold_ms"]:
        time.sleep(kwargs["hold_ms"] / 1000)
    return answer
