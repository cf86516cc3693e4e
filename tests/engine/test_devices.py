"""GPU discovery and assignment, from nvidia-smi text and environments."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from deepaas.cmd._settings import run_settings
from deepaas.config import build_config
from deepaas.engine.build import build_executors
from deepaas.engine.devices import (
    CPU_ENV,
    TRAINING_KEY,
    DevicePlan,
    Gpu,
    GpuNeed,
    parse_nvidia_smi,
    place_model,
    plan_devices,
    read_need,
    select_gpus,
    visible_gpus,
)
from deepaas.engine.in_process import InProcessExecutor
from deepaas.engine.probe import plan_from_settings
from deepaas.engine.process_pool.pool import ProcessPool
from deepaas.exceptions import DeviceUnavailable, ModelLoadError
from deepaas.model.wrapper import RawArguments
from tests.conftest import spec

SMI = """\
0, GPU-aaaa1111-0000-0000-0000-000000000000, NVIDIA A100-SXM4-40GB, 40960
1, GPU-bbbb2222-0000-0000-0000-000000000000, NVIDIA A100-SXM4-40GB, 40960
2, GPU-cccc3333-0000-0000-0000-000000000000, NVIDIA A100-SXM4-40GB, 40960
3, GPU-dddd4444-0000-0000-0000-000000000000, NVIDIA A100-SXM4-40GB, 40960
"""
GPUS = parse_nvidia_smi(SMI)
NEED_ONE = GpuNeed(count=1, required=True, declared=True)


def tokens(gpus: list[Gpu]) -> list[str]:
    return [g.token for g in gpus]


def cvd(envs: list[dict[str, str]]) -> list[str]:
    return [e["CUDA_VISIBLE_DEVICES"] for e in envs]


def test_nvidia_smi_listing_is_parsed():
    assert [g.index for g in GPUS] == [0, 1, 2, 3]
    assert GPUS[1].uuid.startswith("GPU-bbbb2222")
    assert GPUS[0].name == "NVIDIA A100-SXM4-40GB"
    assert GPUS[0].memory_mib == 40960
    # Headers, blank lines and "No devices were found" are not GPUs.
    assert parse_nvidia_smi("No devices were found\n\n") == []


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ["0", "1", "2", "3"]),
        ({"CUDA_VISIBLE_DEVICES": "2,0"}, ["2", "0"]),
        # UUIDs, whole or an unambiguous prefix, are passed on as written.
        (
            {"CUDA_VISIBLE_DEVICES": "GPU-cccc3333,GPU-aaaa"},
            ["GPU-cccc3333", "GPU-aaaa"],
        ),
        # Like CUDA: the list ends at the first token naming no device.
        ({"CUDA_VISIBLE_DEVICES": "1,7,2"}, ["1"]),
        ({"CUDA_VISIBLE_DEVICES": ""}, []),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, []),
        ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, []),
        ({"SLURM_STEP_GPUS": "1,3", "SLURM_JOB_GPUS": "0"}, ["1", "3"]),
        ({"SLURM_JOB_GPUS": "3"}, ["3"]),
        ({"GPU_DEVICE_ORDINAL": "0,1"}, ["0", "1"]),
        # CUDA_VISIBLE_DEVICES (what CUDA itself obeys) wins over SLURM.
        ({"CUDA_VISIBLE_DEVICES": "0", "SLURM_JOB_GPUS": "2,3"}, ["0"]),
    ],
)
def test_only_visible_gpus_are_used(environ, expected):
    assert tokens(visible_gpus(GPUS, environ)) == expected


def test_mig_devices_pass_through():
    seen = visible_gpus(GPUS, {"CUDA_VISIBLE_DEVICES": "MIG-1234-abcd"})
    assert tokens(seen) == ["MIG-1234-abcd"]


def test_slurm_with_constrained_devices_uses_the_listing():
    # With ConstrainDevices nvidia-smi shows only the job's 2 GPUs, as 0 and 1,
    # while SLURM names them by their node indices.
    listing = parse_nvidia_smi(SMI)[:2]
    assert tokens(visible_gpus(listing, {"SLURM_JOB_GPUS": "5,6"})) == ["0", "1"]


def test_gpus_option_picks_among_the_visible_ones():
    visible = visible_gpus(GPUS, {"CUDA_VISIBLE_DEVICES": "3,1,2"})
    assert tokens(select_gpus(visible, "auto")) == ["3", "1", "2"]
    assert select_gpus(visible, "none") == []
    assert tokens(select_gpus(visible, "0,2")) == ["3", "2"]
    with pytest.raises(DeviceUnavailable, match="only 3 GPU"):
        select_gpus(visible, "0,5")
    with pytest.raises(ValueError, match="--gpus takes"):
        select_gpus(visible, "first")


@pytest.mark.parametrize(
    ("resources", "need"),
    [
        ({}, GpuNeed()),
        ({"cpus": 2}, GpuNeed()),
        ({"gpus": 1}, GpuNeed(1, True, True)),
        ({"gpu": "required"}, GpuNeed(1, True, True)),
        ({"gpus": 2, "gpu": "preferred"}, GpuNeed(2, False, True)),
        ({"gpus": 0}, GpuNeed(0, False, True)),
    ],
)
def test_resources_declarations(resources, need):
    assert read_need("m", resources) == need


@pytest.mark.parametrize(
    "resources", [{"gpus": "many"}, {"gpus": -1}, {"gpus": True}, {"gpu": "maybe"}]
)
def test_bad_resources_say_what_is_wrong(resources):
    with pytest.raises(ModelLoadError, match="model 'm': resources"):
        read_need("m", resources)


def test_workers_are_spread_round_robin():
    placement = place_model("m", NEED_ONE, GPUS[:2], workers=1, workers_per_gpu=2)
    assert cvd(placement.worker_envs) == ["0", "1", "0", "1"]
    env = placement.worker_envs[0]
    assert env["DEEPAAS_DEVICE"] == "cuda:0"
    # Our tokens are nvidia-smi indices: CUDA must count in the same order.
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_tokens_of_a_restricted_parent_are_passed_on():
    visible = visible_gpus(GPUS, {"CUDA_VISIBLE_DEVICES": "GPU-dddd4444,2"})
    placement = place_model("m", NEED_ONE, visible, workers=1, parent_restricted=True)
    assert cvd(placement.worker_envs) == ["GPU-dddd4444", "2"]
    assert "CUDA_DEVICE_ORDER" not in placement.worker_envs[0]


def test_multi_gpu_workers_get_whole_groups():
    need = GpuNeed(count=2, required=True, declared=True)
    placement = place_model("m", need, GPUS[:3], workers=1)
    # Three GPUs make one group of two; the third is left unused.
    assert cvd(placement.worker_envs) == ["0,1"]


def test_training_keeps_its_own_gpu_when_there_are_two():
    placement = place_model("m", NEED_ONE, GPUS[:3], workers=1, workers_per_gpu=2,
                            reserve_training=True)
    assert cvd(placement.worker_envs) == ["0", "1", "0", "1"]
    assert placement.training_env["CUDA_VISIBLE_DEVICES"] == "2"


def test_training_shares_a_single_gpu():
    placement = place_model("m", NEED_ONE, GPUS[:1], workers=1, reserve_training=True)
    assert cvd(placement.worker_envs) == ["0"]
    assert placement.training_env["CUDA_VISIBLE_DEVICES"] == "0"


def test_required_gpu_without_one_fails_clearly():
    with pytest.raises(DeviceUnavailable) as info:
        place_model("big", NEED_ONE, [], workers=1)
    message = info.value.message
    assert "model 'big' asks for 1 GPU(s) per worker, but 0 GPU(s)" in message


def test_preferred_gpu_without_one_runs_on_the_cpu():
    need = GpuNeed(count=1, required=False, declared=True)
    placement = place_model("m", need, [], workers=2)
    assert placement.worker_envs == [CPU_ENV, CPU_ENV]
    assert "runs on the CPU" in placement.warning


def test_models_that_declare_nothing_are_left_alone():
    placement = place_model("m", GpuNeed(), GPUS, workers=3)
    assert placement.worker_envs == [{}, {}, {}]
    assert placement.training_env is None


def test_declaring_no_gpu_hides_them():
    placement = place_model("m", GpuNeed(0, False, True), GPUS, workers=1)
    hidden = {"CUDA_VISIBLE_DEVICES": "", "DEEPAAS_DEVICE": "cpu"}
    assert placement.worker_envs == [hidden]


@pytest.mark.parametrize(("trains", "said"), [(True, True), (False, False)])
def test_the_plan_mentions_trainings_only_for_a_model_that_trains(
    caplog, trains, said
):
    caplog.set_level(logging.INFO, logger="deepaas.engine.devices")
    plan_devices({"m": NEED_ONE}, GPUS[:2], workers=1, trains={"m": trains})
    [line] = [m for r in caplog.records if "worker(s) on" in (m := r.getMessage())]
    assert line.startswith("model 'm': ")
    assert ("trainings on" in line) is said


# -- from the configuration, with real probe processes ----------------------------


def conf(*argv: str):
    return build_config(list(argv))


async def plan_with(specs, conf, **kwargs):
    """The device plan deepaas-run makes with these options."""
    run = run_settings(conf)
    return await plan_from_settings(
        specs, run.engine, trains_locally=run.trains_locally, **kwargs
    )


@pytest.mark.slow
async def test_the_options_place_declared_models(installed_models, caplog):
    specs = [spec(n) for n in ("needs-gpu", "prefers-gpu", "echo", "thread-echo")]
    caplog.set_level(logging.INFO, "deepaas.engine.devices")
    plan = await plan_with(
        specs, conf("--workers", "2", "--workers-per-gpu", "2"),
        gpus=GPUS, environ={"CUDA_VISIBLE_DEVICES": "1,3"},
    )
    # needs-gpu trains: GPU 3 is kept for its trainings.
    assert cvd(plan["needs-gpu"]) == ["1", "1"]
    assert plan.training_env("needs-gpu")["CUDA_VISIBLE_DEVICES"] == "3"
    assert cvd(plan["prefers-gpu"]) == ["1", "1"]
    assert plan["echo"] == [{}, {}]
    assert "thread-echo" not in plan
    assert plan.modes == {"needs-gpu": "process", "prefers-gpu": "process",
                          "echo": "process", "thread-echo": "thread"}
    assert "model 'needs-gpu': 2 worker(s)" in caplog.text


@pytest.mark.slow
async def test_no_reservation_when_the_train_endpoint_is_off(installed_models):
    plan = await plan_with(
        [spec("needs-gpu")], conf("--train-endpoint", "false"), gpus=GPUS[:2],
        environ={},
    )
    assert cvd(plan["needs-gpu"]) == ["0", "1"]
    assert TRAINING_KEY + "needs-gpu" in plan


@pytest.mark.slow
async def test_required_gpu_stops_start_up(installed_models):
    with pytest.raises(DeviceUnavailable, match="'two-gpus' asks for 2 GPU"):
        await plan_with([spec("two-gpus")], conf(), gpus=GPUS[:1], environ={})
    with pytest.raises(DeviceUnavailable, match="'metadata-gpu' asks for 1"):
        await plan_with([spec("metadata-gpu")], conf("--gpus", "none"),
                               gpus=GPUS, environ={})


@pytest.mark.slow
async def test_preferred_gpu_warns_and_uses_the_cpu(installed_models, caplog):
    plan = await plan_with([spec("prefers-gpu")], conf(), gpus=[], environ={})
    assert plan["prefers-gpu"] == [CPU_ENV]
    assert "it prefers a GPU, so it runs on the CPU" in caplog.text


@pytest.mark.slow
async def test_a_bad_declaration_stops_start_up(installed_models):
    with pytest.raises(ModelLoadError, match="resources\\['gpus'\\] must be"):
        await plan_with([spec("bad-resources")], conf(), gpus=[], environ={})
    with pytest.raises(ModelLoadError, match="'broken'"):
        await plan_with([spec("broken")], conf(), gpus=[], environ={})


async def test_workers_zero_plans_nothing():
    plan = await plan_with([spec("needs-gpu")], conf("--workers", "0"))
    assert plan == {} and plan.modes == {}


async def test_the_plan_chooses_the_executors(installed_models):
    plan = DevicePlan({"needs-gpu": [{"CUDA_VISIBLE_DEVICES": "1"}] * 3})
    plan.modes = {"needs-gpu": "process", "thread-echo": "thread"}
    executors = build_executors([spec("needs-gpu"), spec("thread-echo")],
                                workers=1, worker_envs=plan)
    assert isinstance(executors["needs-gpu"], ProcessPool)
    assert executors["needs-gpu"].status()["workers"] == 3
    assert isinstance(executors["thread-echo"], InProcessExecutor)


@pytest.mark.slow
async def test_a_worker_sees_only_its_gpu(installed_models):
    """Real workers start with the planned environment before the import."""
    placement = place_model("needs-gpu", NEED_ONE, GPUS[2:4], workers=1)
    pool = ProcessPool(spec("needs-gpu"), size=2, worker_envs=placement.worker_envs)
    await pool.start()
    try:
        seen = set()
        for _ in range(2):
            answers = await asyncio.gather(
                pool.predict(RawArguments(), None), pool.predict(RawArguments(), None)
            )
            for outcome in answers:
                body = json.loads(outcome.body)["predictions"]
                seen.add((body["cuda_visible_devices"], body["device"]))
    finally:
        await pool.stop()
    assert seen == {("2", "cuda:0"), ("3", "cuda:0")}
