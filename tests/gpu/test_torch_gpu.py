"""A real torch model on a real GPU: runs wherever an NVIDIA GPU and torch are."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil

import pytest

from deepaas.engine.build import build_executors
from deepaas.engine.devices import list_gpus, visible_gpus
from deepaas.engine.probe import plan_from_settings
from deepaas.engine.settings import EngineSettings
from deepaas.model.loading import ModelSpec
from deepaas.model.wrapper import RawArguments

pytestmark = pytest.mark.gpu


def _skip_reason() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU here (nvidia-smi is not installed)"
    if not visible_gpus(list_gpus(), os.environ):
        return "nvidia-smi lists no GPU visible to this process"
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install torch==2.13.0)"
    import torch

    if torch.version.cuda is None:  # reading the build info touches no GPU
        return f"torch {torch.__version__} is a CPU-only build"
    return None


async def test_a_torch_model_runs_on_its_own_gpu():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    visible = visible_gpus(list_gpus(), os.environ)
    spec = ModelSpec("torch-gpu", "tests.gpu.torch_model:TorchOnGpu", None)
    # As deepaas-run with --train-endpoint false: no GPU kept for trainings.
    plan = await plan_from_settings([spec], EngineSettings(), trains_locally=False)
    executors = build_executors([spec], worker_envs=plan)
    pool = executors["torch-gpu"]
    await pool.start()
    try:
        outcome = await asyncio.wait_for(pool.predict(RawArguments(), None), 120)
    finally:
        await pool.stop()
    answer = json.loads(outcome.body)["predictions"]
    assert answer["tensor_device"] == "cuda:0"
    assert answer["helper"] == "cuda:0"
    # Each worker sees exactly its one GPU, chosen among the visible ones.
    assert answer["device_count"] == 1
    assert answer["cuda_visible_devices"] in {g.token for g in visible}
    assert len(plan["torch-gpu"]) == len(visible)
