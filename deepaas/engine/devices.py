"""GPU discovery and assignment: which worker sees which GPU.

Discovery needs no torch: ``nvidia-smi`` lists the GPUs of the machine, and
the environment says which of them this process may use
(``CUDA_VISIBLE_DEVICES``, else SLURM's allocation).  Assignment is a set of
pure functions over those facts, so it is tested without a GPU; what each
model asks for comes from :mod:`deepaas.engine.probe`, which calls them.  Each worker
is bound to its GPUs by the environment it starts with: the worker sets
``CUDA_VISIBLE_DEVICES`` before it imports the model, so the model sees its
GPU as ``cuda:0`` whatever its framework.

The rules (docs/gpus.md tells users the same):

* A model asks for GPUs with ``resources = {"gpus": N, "gpu": "required" |
  "preferred"}`` (attribute or metadata key); ``"gpu"`` defaults to
  ``"required"`` and ``"gpus"`` to 1 when only ``"gpu"`` is given.
* A model that declares nothing is left alone: its workers inherit the
  server's environment, as the existing DEEPaaS did (legacy models that pick
  a GPU themselves keep working).  ``{"gpus": 0}`` hides every GPU.
* The allowed GPUs (``--gpus``) are cut into groups of N; each group gets
  ``--workers-per-gpu`` prediction workers, assigned round-robin.
* A model with a ``train`` method (and the train endpoint on) keeps its last
  group for trainings when it has two or more groups; with one group,
  trainings share it with predictions.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from deepaas.exceptions import DeviceUnavailable, ModelLoadError
from deepaas.model.worker_device import DEVICE_ENV

LOG = logging.getLogger(__name__)

#: Key prefix of the training environment in a :class:`DevicePlan`.
TRAINING_KEY = "__training__:"
#: Values of ``CUDA_VISIBLE_DEVICES`` (and SLURM) that mean "no GPU at all".
_NO_DEVICE = {"", "-1", "none", "nodevfiles"}
NVIDIA_SMI_QUERY = [
    "--query-gpu=index,uuid,name,memory.total",
    "--format=csv,noheader,nounits",
]
EXECUTION_MODES = ("process", "thread", "async")


@dataclasses.dataclass(frozen=True)
class Gpu:
    """One GPU as this process may use it.

    ``token`` is what a child's ``CUDA_VISIBLE_DEVICES`` must hold to show it
    this GPU: the parent's own token when the parent is restricted, else the
    NVML index (with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, so that CUDA counts
    like nvidia-smi).
    """

    index: int
    uuid: str = ""
    name: str = ""
    memory_mib: int = 0
    token: str = ""

    def __str__(self) -> str:
        label = f"GPU {self.token or self.index}"
        return f"{label} ({self.name})" if self.name else label


@dataclasses.dataclass(frozen=True)
class GpuNeed:
    """What a model asked for: GPUs per worker, and whether it must have them."""

    count: int = 0
    required: bool = False
    declared: bool = False


class DevicePlan(dict[str, Any]):
    """Per model, each worker's extra environment, and how the model runs.

    It is the mapping ``build_executors`` takes as ``worker_envs``: model name
    -> list of environments, one per worker.  ``"__training__:<model>"`` ->
    the environment of that model's training processes.  ``modes`` says per
    model ``"process"``, ``"thread"`` or ``"async"``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.modes: dict[str, str] = {}
        #: No probe ran (no GPU to assign): each model's first worker says
        #: how it runs, and its workers go on the CPU.
        self.described_by_workers = False

    def training_env(self, model: str) -> dict[str, str] | None:
        """Environment of a training process of ``model`` (None: inherit)."""
        env: dict[str, str] | None = self.get(TRAINING_KEY + model)
        return env


# -- discovery ----------------------------------------------------------------


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """Read ``nvidia-smi --query-gpu=index,uuid,name,memory.total`` CSV lines."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or not parts[0].isdigit():
            continue
        memory = parts[3].split()[0] if len(parts) > 3 and parts[3] else "0"
        gpus.append(
            Gpu(
                index=int(parts[0]),
                uuid=parts[1],
                name=parts[2] if len(parts) > 2 else "",
                memory_mib=int(memory) if memory.isdigit() else 0,
                token=parts[0],
            )
        )
    return gpus


def list_gpus(*, timeout: float = 10.0) -> list[Gpu]:
    """Every GPU of the machine according to ``nvidia-smi`` (none without it)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        done = subprocess.run(  # noqa: S603 (nvidia-smi from PATH, fixed argv)
            [exe, *NVIDIA_SMI_QUERY],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        LOG.warning("nvidia-smi failed (%s); using no GPU", exc)
        return []
    if done.returncode != 0:
        LOG.warning("nvidia-smi failed (%s); using no GPU", done.stderr.strip())
        return []
    return parse_nvidia_smi(done.stdout)


def _tokens(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def _match(token: str, gpus: Sequence[Gpu]) -> Gpu | None:
    if token.isdigit():
        return next((g for g in gpus if g.index == int(token)), None)
    if token.startswith("GPU-"):
        # CUDA accepts any unambiguous prefix of a UUID.
        found = [g for g in gpus if g.uuid.startswith(token)]
        return found[0] if len(found) == 1 else None
    return None


def visible_gpus(gpus: Sequence[Gpu], environ: Mapping[str, str]) -> list[Gpu]:
    """The GPUs this process may use, in the order CUDA numbers them.

    ``CUDA_VISIBLE_DEVICES`` wins (indices or UUIDs; like CUDA, the list ends
    at the first token that names no device; MIG tokens pass through as
    they are).  Without it, SLURM's allocation (``SLURM_STEP_GPUS``,
    ``SLURM_JOB_GPUS``, ``GPU_DEVICE_ORDINAL``) restricts the listing.
    """
    cvd = environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        if cvd.strip().lower() in _NO_DEVICE:
            return []
        chosen: list[Gpu] = []
        for token in _tokens(cvd):
            if token.startswith("MIG-"):
                chosen.append(Gpu(index=-1, uuid=token, name="MIG", token=token))
                continue
            gpu = _match(token, gpus)
            if gpu is None:
                break
            chosen.append(dataclasses.replace(gpu, token=token))
        return chosen
    for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "GPU_DEVICE_ORDINAL"):
        value = environ.get(name)
        if value is None:
            continue
        if value.strip().lower() in _NO_DEVICE:
            return []
        tokens = _tokens(value)
        matched = [_match(t, gpus) for t in tokens]
        if all(g is not None for g in matched):
            return [g for g in matched if g is not None]
        # With ConstrainDevices, nvidia-smi lists only the allocated GPUs,
        # renumbered from 0, while SLURM names them by their node index.
        if len(tokens) == len(gpus):
            return list(gpus)
        return [g for g in matched if g is not None]
    return list(gpus)


def select_gpus(visible: Sequence[Gpu], option: str) -> list[Gpu]:
    """Apply ``--gpus``: ``auto``, ``none`` or indices among the visible GPUs."""
    value = option.strip().lower()
    if value in ("auto", "all", ""):
        return list(visible)
    if value == "none":
        return []
    chosen: list[Gpu] = []
    for token in _tokens(value):
        if not token.isdigit():
            raise ValueError(
                f"--gpus takes 'auto', 'none' or indices such as 0,2 (got {option!r})"
            )
        position = int(token)
        if position >= len(visible):
            raise DeviceUnavailable(
                f"--gpus {option!r} names GPU {position}, but only {len(visible)} "
                f"GPU(s) are visible{_listing(visible)}; indices count among the "
                "visible GPUs (after CUDA_VISIBLE_DEVICES or SLURM's allocation)"
            )
        if visible[position] not in chosen:
            chosen.append(visible[position])
    return chosen


def _listing(gpus: Sequence[Gpu]) -> str:
    return (": " + ", ".join(str(g) for g in gpus)) if gpus else ""


# -- what a model asks for ------------------------------------------------------


def read_need(model: str, resources: Mapping[str, Any]) -> GpuNeed:
    """Validate a model's ``resources`` declaration."""
    if not resources or ("gpus" not in resources and "gpu" not in resources):
        return GpuNeed()
    kind = resources.get("gpu", "required")
    if kind not in ("required", "preferred"):
        raise ModelLoadError(
            f"model {model!r}: resources['gpu'] must be 'required' or 'preferred' "
            f"(got {kind!r})"
        )
    count = resources.get("gpus", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ModelLoadError(
            f"model {model!r}: resources['gpus'] must be a whole number >= 0 "
            f"(got {count!r})"
        )
    return GpuNeed(
        count=count, required=kind == "required" and count > 0, declared=True
    )


# -- assignment -----------------------------------------------------------------


def gpu_env(group: Sequence[Gpu], *, parent_restricted: bool) -> dict[str, str]:
    """The environment that binds a worker to ``group``."""
    env = {
        "CUDA_VISIBLE_DEVICES": ",".join(g.token or str(g.index) for g in group),
        DEVICE_ENV: "cuda:0",
    }
    if not parent_restricted:
        # Our tokens are nvidia-smi (NVML) indices; make CUDA count the same way.
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return env


CPU_ENV = {"CUDA_VISIBLE_DEVICES": "", DEVICE_ENV: "cpu"}


@dataclasses.dataclass
class ModelPlacement:
    """Where one model's workers (and trainings) run."""

    worker_envs: list[dict[str, str]]
    training_env: dict[str, str] | None = None
    warning: str = ""


def place_model(
    model: str,
    need: GpuNeed,
    gpus: Sequence[Gpu],
    *,
    workers: int,
    workers_per_gpu: int = 1,
    reserve_training: bool = False,
    parent_restricted: bool = False,
) -> ModelPlacement:
    """Plan one model's workers over the allowed ``gpus`` (pure).

    Raises :class:`DeviceUnavailable` when the model requires more GPUs per
    worker than are allowed.
    """
    if workers_per_gpu < 1:
        raise ValueError(f"--workers-per-gpu must be >= 1 (got {workers_per_gpu})")
    if not need.declared:
        return ModelPlacement([{} for _ in range(workers)])
    if need.count == 0:
        return ModelPlacement([dict(CPU_ENV) for _ in range(workers)], dict(CPU_ENV))
    groups = [
        list(gpus[i : i + need.count])
        for i in range(0, len(gpus) - need.count + 1, need.count)
    ]
    if not groups:
        message = (
            f"model {model!r} asks for {need.count} GPU(s) per worker, but "
            f"{len(gpus)} GPU(s) may be used{_listing(gpus)} (see --gpus, "
            "CUDA_VISIBLE_DEVICES and SLURM's GPU allocation)"
        )
        if need.required:
            raise DeviceUnavailable(message)
        return ModelPlacement(
            [dict(CPU_ENV) for _ in range(workers)],
            dict(CPU_ENV),
            warning=message + "; it prefers a GPU, so it runs on the CPU",
        )
    envs = [gpu_env(g, parent_restricted=parent_restricted) for g in groups]
    training = envs[0]
    if reserve_training and len(envs) >= 2:
        training = envs.pop()
    # Round-robin: worker i on group i % groups, so that the first workers
    # spread over every GPU before any GPU gets a second one.
    count = len(envs) * workers_per_gpu
    worker_envs = [dict(envs[i % len(envs)]) for i in range(count)]
    return ModelPlacement(worker_envs, dict(training))


def plan_devices(
    needs: Mapping[str, GpuNeed],
    gpus: Sequence[Gpu],
    *,
    workers: int,
    workers_per_gpu: int = 1,
    trains: Mapping[str, bool] | None = None,
    parent_restricted: bool = False,
) -> DevicePlan:
    """Plan every model; logs each model's placement (pure apart from logging)."""
    plan = DevicePlan()
    for model, need in needs.items():
        placement = place_model(
            model,
            need,
            gpus,
            workers=workers,
            workers_per_gpu=workers_per_gpu,
            reserve_training=bool((trains or {}).get(model)),
            parent_restricted=parent_restricted,
        )
        if placement.warning:
            LOG.warning("%s", placement.warning)
        plan[model] = placement.worker_envs
        if placement.training_env is not None:
            plan[TRAINING_KEY + model] = placement.training_env
        if need.count:
            said = f"model {model!r}: {len(placement.worker_envs)} worker(s) on "
            said += _where(plan[model])
            if (trains or {}).get(model):  # not deepaas-predict: it never trains
                said += "; trainings on " + _where([placement.training_env or {}])
            LOG.info("%s", said)
    return plan


def _where(envs: Sequence[Mapping[str, str]]) -> str:
    """Where processes started with ``envs`` compute: "the CPU" or their GPUs."""
    tokens = sorted({env.get("CUDA_VISIBLE_DEVICES", "").strip() for env in envs})
    if all(token in _NO_DEVICE for token in tokens):
        return "the CPU"
    return " and ".join(
        f"GPUs {token}" if "," in token else f"GPU {token}" for token in tokens
    )


def read_execution(model: str, declared: Any) -> str:
    """Validate a model's ``deepaas_execution`` attribute."""
    if declared is None:
        return "process"
    if declared not in EXECUTION_MODES:
        raise ModelLoadError(
            f"model {model!r}: deepaas_execution must be one of "
            f"{', '.join(map(repr, EXECUTION_MODES))} (got {declared!r})"
        )
    return str(declared)


__all__ = [
    "DevicePlan",
    "Gpu",
    "GpuNeed",
    "ModelPlacement",
    "list_gpus",
    "parse_nvidia_smi",
    "place_model",
    "plan_devices",
    "read_need",
    "select_gpus",
    "visible_gpus",
]
