"""The start-up line that says where a model's workers and trainings run.

``deepaas-run`` logs it once per model that declares GPUs; it must say
something true and complete whether the model got GPUs or the CPU.
"""

from __future__ import annotations

import logging

import pytest

from deepaas.cmd._settings import run_settings
from deepaas.config import build_config
from deepaas.engine.devices import GpuNeed, parse_nvidia_smi, plan_devices
from deepaas.engine.probe import plan_from_settings
from tests.conftest import spec


async def plan_with(specs, conf, **kwargs):
    """The device plan deepaas-run makes with these options."""
    run = run_settings(conf)
    return await plan_from_settings(
        specs, run.engine, trains_locally=run.trains_locally, **kwargs
    )


GPUS = parse_nvidia_smi(
    "0, GPU-aaa, NVIDIA A100, 40960\n"
    "1, GPU-bbb, NVIDIA A100, 40960\n"
    "2, GPU-ccc, NVIDIA A100, 40960\n"
)
PREFERS = GpuNeed(count=1, required=False, declared=True)


def placement_line(caplog: pytest.LogCaptureFixture) -> str:
    [line] = [m for r in caplog.records if "worker(s)" in (m := r.getMessage())]
    return line


@pytest.mark.slow
async def test_a_model_that_prefers_a_gpu_and_has_none_says_the_cpu(
    installed_models, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="deepaas.engine.devices")
    await plan_with(
        [spec("prefers-gpu")], build_config(["--workers", "1"]), gpus=[],
        environ={},
    )  # fmt: skip
    assert placement_line(caplog) == (
        "model 'prefers-gpu': 1 worker(s) on the CPU; trainings on the CPU"
    )


@pytest.mark.parametrize(
    ("gpus", "count", "said"),
    [
        (GPUS[:1], 1, "1 worker(s) on GPU 0; trainings on GPU 0"),
        (GPUS, 1, "2 worker(s) on GPU 0 and GPU 1; trainings on GPU 2"),
        (GPUS[:2], 2, "1 worker(s) on GPUs 0,1; trainings on GPUs 0,1"),
    ],
)
def test_workers_and_trainings_on_gpus_are_named(caplog, gpus, count, said) -> None:
    caplog.set_level(logging.INFO, logger="deepaas.engine.devices")
    need = GpuNeed(count=count, required=True, declared=True)
    plan_devices({"m": need}, gpus, workers=1, trains={"m": True})
    assert placement_line(caplog) == f"model 'm': {said}"


def test_a_model_that_does_not_train_gets_no_training_part(caplog) -> None:
    caplog.set_level(logging.INFO, logger="deepaas.engine.devices")
    plan_devices({"m": PREFERS}, [], workers=2, trains={"m": False})
    assert placement_line(caplog) == "model 'm': 2 worker(s) on the CPU"


@pytest.mark.slow
async def test_with_slurm_trainings_no_gpu_is_kept_here(
    installed_models, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="deepaas.engine.devices")
    conf = build_config(["--workers", "1", "--train-backend", "slurm"])
    plan = await plan_with([spec("needs-gpu")], conf, gpus=GPUS[:2], environ={})
    assert [e["CUDA_VISIBLE_DEVICES"] for e in plan["needs-gpu"]] == ["0", "1"]
    # Its trainings run in SLURM's jobs: the line says nothing of them here.
    assert placement_line(caplog) == "model 'needs-gpu': 2 worker(s) on GPU 0 and GPU 1"
