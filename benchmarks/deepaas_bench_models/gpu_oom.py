"""Runs out of GPU memory on request: the GPU check's out-of-memory case.

``mode=fill`` takes the GPU's memory in chunks until the allocator refuses,
as a model given too large an input does; the error ends the call.  On the
CPU (the check's rehearsal) it asks for one impossible block instead, which
the allocator refuses at once: filling a machine's RAM would harm it.
``mode=small`` is an ordinary call that reports the worker's GPU memory.
"""

from __future__ import annotations

import os

from marshmallow import fields, validate

import deepaas

resources = {"gpus": 1, "gpu": "preferred"}

#: Never more chunks than this, whatever the GPU's size.
MAX_CHUNKS = 4096


def get_metadata():
    return {"name": "bench_gpu_oom", "description": "Runs out of GPU memory."}


def get_predict_args():
    return {
        "mode": fields.Str(
            load_default="small", validate=validate.OneOf(["fill", "small"])
        ),
        "chunk_mib": fields.Int(load_default=1024, validate=validate.Range(min=1)),
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
    block = torch.ones(64 << 20, dtype=torch.uint8, device=device)
    answer = {"pid": os.getpid(), "device": str(block.device), "sum": int(block.sum())}
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info()
        answer.update(
            reserved_mib=torch.cuda.memory_reserved() >> 20,
            free_mib=free >> 20,
            total_mib=total >> 20,
        )
    return answer
