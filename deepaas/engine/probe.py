"""Before serving: each model described by a short-lived probe process, and
the device plan made from what the probes report.

The API process never imports a model, so each model is first imported in
a spawned *probe* (every GPU hidden, no warm), which reports its
``resources``, its ``deepaas_execution`` mode and whether it trains.
:func:`plan_from_settings` turns those facts, the machine's GPUs and the
engine's settings into a :class:`~deepaas.engine.devices.DevicePlan`; the
assignment itself is the pure functions of :mod:`deepaas.engine.devices`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from deepaas.engine.devices import (
    DevicePlan,
    Gpu,
    list_gpus,
    place_model,
    plan_devices,
    read_execution,
    read_need,
    select_gpus,
    visible_gpus,
)
from deepaas.engine.processes import (
    Prologue,
    ready_payload,
    report_ready,
    spawn_child,
    start_child,
)
from deepaas.engine.processes.wire import BlockingChannel
from deepaas.engine.settings import EngineSettings
from deepaas.exceptions import ModelLoadError
from deepaas.model.wrapper import ModelWrapper, load_wrapped

LOG = logging.getLogger(__name__)


#: The probe only reads declarations: it must never touch a GPU.  It
#: disregards no signal and logs as Python starts (to stderr).
PROBE_PROLOGUE = Prologue(env={"CUDA_VISIBLE_DEVICES": ""}, disregard=())


def probe_model(sock: socket.socket, spec: Any) -> None:
    """Import a model (GPUs hidden, no warm) and report what it declares.

    It runs after :data:`PROBE_PROLOGUE`; its loop is one answer: what
    the model declares, as its ``ready`` payload.
    """
    channel = BlockingChannel(sock)
    facts = start_child(
        channel.send, spec.name, lambda: model_facts(spec, load_wrapped(spec))
    )
    if facts is not None:
        report_ready(channel.send, facts, freeze=False)
    # Nothing is left to do, and the server waits for this process to end
    # before it starts the workers: skip the interpreter's clean-up (tearing
    # down a model's torch takes half a second).  The guard forked by
    # the prologue (contain_children) still ends whatever the import started.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def model_facts(spec: Any, wrapper: ModelWrapper) -> dict[str, Any]:
    """What a loaded model declares that decides how and where it runs:
    its ``resources`` (validated), its ``deepaas_execution`` mode and
    whether it trains.  Raises ModelLoadError for a bad declaration."""
    resources = wrapper.resources()
    read_need(spec.name, resources)
    return {
        "resources": resources,
        "execution": read_execution(
            spec.name, getattr(wrapper.model, "deepaas_execution", None)
        ),
        "trains": wrapper.has("train"),
    }


def _probe_one(spec: Any, timeout: float) -> dict[str, Any]:
    parent, child = socket.socketpair()
    try:
        process = spawn_child(
            probe_model,
            (child, spec),
            name=f"deepaas-probe-{spec.name}",
            prologue=PROBE_PROLOGUE,
            child_ends=(child,),
        )
    except BaseException:
        parent.close()
        raise
    parent.settimeout(timeout)
    try:
        message = BlockingChannel(parent).recv()
    except (EOFError, OSError) as exc:
        process.join(1)
        raise ModelLoadError(
            f"model {spec.name!r}: describing it failed ({exc}); exit code "
            f"{process.exitcode}"
        ) from None
    finally:
        parent.close()
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
    facts: dict[str, Any] = ready_payload(message)
    return facts


async def probe_models(
    specs: Sequence[Any], *, timeout: float = 600.0
) -> dict[str, dict[str, Any]]:
    """Describe every model in its own spawned process, all at once."""
    loop = asyncio.get_running_loop()
    results = await asyncio.gather(
        *(loop.run_in_executor(None, _probe_one, spec, timeout) for spec in specs)
    )
    return {spec.name: facts for spec, facts in zip(specs, results, strict=True)}


async def plan_from_settings(
    specs: Sequence[Any],
    settings: EngineSettings,
    *,
    trains_locally: bool = True,
    gpus: Sequence[Gpu] | None = None,
    environ: Mapping[str, str] | None = None,
    describe_in_workers: bool = False,
) -> DevicePlan:
    """Decide how and where each model runs, before any worker starts.

    The API process never imports a model, so each model is first described
    by a short-lived spawned *probe* process (with every GPU hidden), which
    reports its ``resources``, its ``deepaas_execution`` mode and whether it
    trains.  That costs one import of the model at start-up, no warm.  With
    ``--workers 0`` everything runs in-process and nothing is probed.

    With ``describe_in_workers`` and no GPU that may be used, nothing is
    probed: there is nothing to assign, so each model's first worker
    describes it instead (``plan.described_by_workers``), and the model is
    imported once rather than twice in a row (``deepaas-run``).

    ``trains_locally``: trainings run as processes of this machine, so a
    model that trains gets a GPU kept for them (False with the train
    endpoints off, with ``--train-backend slurm``, whose jobs get GPUs from
    SLURM, and in ``deepaas-predict``).  ``gpus`` (the ``nvidia-smi``
    listing) and ``environ`` default to this machine's.
    """
    env = os.environ if environ is None else environ
    plan = DevicePlan()
    if settings.workers == 0:
        return plan
    listing = list_gpus() if gpus is None else list(gpus)
    allowed = select_gpus(visible_gpus(listing, env), settings.gpus)
    if describe_in_workers and not allowed:
        plan.described_by_workers = True
        return plan
    facts = await probe_models(specs)
    needs = {name: read_need(name, f["resources"]) for name, f in facts.items()}
    in_process = {name for name, f in facts.items() if f["execution"] != "process"}
    for name in in_process:
        # In-process models share the server's environment; only check.
        placement = place_model(name, needs[name], allowed, workers=1)
        if placement.warning:
            LOG.warning("%s", placement.warning)
    planned = plan_devices(
        {n: need for n, need in needs.items() if n not in in_process},
        allowed,
        workers=settings.workers,
        workers_per_gpu=settings.workers_per_gpu,
        trains={n: trains_locally and f["trains"] for n, f in facts.items()},
        parent_restricted="CUDA_VISIBLE_DEVICES" in env,
    )
    plan.update(planned)
    plan.modes = {name: f["execution"] for name, f in facts.items()}
    return plan


__all__ = ["plan_from_settings", "probe_model", "probe_models"]
