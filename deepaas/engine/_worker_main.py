"""The body of spawned processes: a serving worker, and the start-up probe.

A worker sets its environment (e.g. ``CUDA_VISIBLE_DEVICES``) before it
imports the model, so device bindings hold for frameworks that read them at
import.  It exits when the API process says ``stop`` or goes away (end of
file on its socket, or, on Linux, the parent's death signal), so no worker
outlives its server.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import threading
import traceback
from collections.abc import Sequence
from typing import Any

from deepaas.engine._process import (
    contain_children,
    die_with_parent,
    freeze_startup_objects,
    prepare_worker_process,
)
from deepaas.engine._wire import BlockingChannel, error_from_wire, error_to_wire
from deepaas.exceptions import DeepaasError, DeviceUnavailable, ModelLoadError


def _start_error(name: str, exc: BaseException) -> tuple[Any, str]:
    """A start-up failure as a load error naming the model (and why)."""
    if isinstance(exc, (ModelLoadError, DeviceUnavailable)):
        error: DeepaasError = exc
    else:
        reason = exc.message if isinstance(exc, DeepaasError) else (
            f"{type(exc).__name__}: {exc}"
        )
        error = ModelLoadError(f"model {name!r} could not start: {reason}")
    return error_to_wire(error), "".join(traceback.format_exception(exc))


def run_worker(
    sock: socket.socket,
    spec: Any,
    warm: bool,
    env: dict[str, str],
    log_level: int,
    control: socket.socket | None = None,
) -> None:
    """Serve calls on ``sock`` until told to stop.

    ``control`` carries the calls that must not wait behind predictions
    (training-argument validation): a thread of their own answers them.
    """
    prepare_worker_process(env, log_level)
    channel = BlockingChannel(sock)
    from deepaas.engine.batching import run_batch
    from deepaas.engine.execution import jsonable_arguments
    from deepaas.model.wrapper import RawArguments, load_wrapped, model_error

    try:
        wrapper = load_wrapped(spec, warm=warm)
        description = wrapper.describe()
    except BaseException as exc:  # report every start-up failure to the parent
        channel.send(("failed", *_start_error(spec.name, exc)))
        return
    freeze_startup_objects()
    if control is not None:
        threading.Thread(
            target=_answer_control,
            args=(BlockingChannel(control), wrapper),
            name="deepaas-validate",
            daemon=True,
        ).start()
    channel.send(("ready", description, os.getpid()))

    while True:
        try:
            message = channel.recv()
        except (EOFError, OSError):
            return
        kind = message[0]
        if kind == "stop":
            return
        call_id = message[1]
        try:
            result: Any
            if kind == "predict":  # (pairs, json_body, accept) -> (body, media type)
                raw = RawArguments(pairs=message[2], json_body=message[3])
                outcome = wrapper.run_predict(raw, message[4])
                result = (outcome.body, outcome.content_type)
            elif kind == "predict_batch":
                result = [
                    error_to_wire(o) if isinstance(o, DeepaasError) else o
                    for o in run_batch(wrapper, message[2])
                ]
            elif kind == "validate_train":
                result = jsonable_arguments(wrapper.parse_train_args(message[2]))
            else:
                raise DeepaasError(f"unknown worker call {kind!r}")
            reply: tuple[Any, ...] = ("result", call_id, result)
        except DeepaasError as exc:
            reply = ("error", call_id, error_to_wire(exc))
        except BaseException as exc:
            reply = ("error", call_id, error_to_wire(model_error(exc)))
        try:
            channel.send(reply)
        except (OSError, ValueError):
            return
        except Exception as exc:  # an answer that cannot be pickled
            channel.send(("error", call_id, error_to_wire(model_error(exc))))


def _answer_control(channel: BlockingChannel, wrapper: Any) -> None:
    """Answer training-argument validations until the socket closes."""
    from deepaas.engine.execution import jsonable_arguments
    from deepaas.model.wrapper import model_error

    while True:
        try:
            message = channel.recv()
        except (EOFError, OSError):
            return
        call_id = message[1]
        try:
            if message[0] != "validate_train":
                raise DeepaasError(f"unknown worker call {message[0]!r}")
            args = jsonable_arguments(wrapper.parse_train_args(message[2]))
            reply: tuple[Any, ...] = ("result", call_id, args)
        except DeepaasError as exc:
            reply = ("error", call_id, error_to_wire(exc))
        except Exception as exc:
            reply = ("error", call_id, error_to_wire(model_error(exc)))
        try:
            channel.send(reply)
        except (OSError, ValueError):
            return


# -- the start-up probe -----------------------------------------------------------


def probe_model(sock: socket.socket, spec: Any) -> None:
    """Import a model (GPUs hidden, no warm) and report what it declares."""
    # The probe only reads declarations: it must never touch a GPU.
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    die_with_parent()
    contain_children()  # a model may start processes when imported
    channel = BlockingChannel(sock)
    from deepaas.engine.devices import read_execution, read_need
    from deepaas.model.wrapper import load_wrapped

    try:
        wrapper = load_wrapped(spec)
        resources = wrapper.resources()
        read_need(spec.name, resources)
        facts = {
            "resources": resources,
            "execution": read_execution(
                spec.name, getattr(wrapper.model, "deepaas_execution", None)
            ),
            "trains": wrapper.has("train"),
        }
    except BaseException as exc:
        channel.send(("failed", *_start_error(spec.name, exc)))
        return
    channel.send(("probe", facts))


def _probe_one(spec: Any, timeout: float) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    parent, child = socket.socketpair()
    process = context.Process(
        target=probe_model, args=(child, spec), daemon=True,
        name=f"deepaas-probe-{spec.name}",
    )
    process.start()
    child.close()
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
    if message[0] == "failed":
        raise error_from_wire(message[1])
    facts: dict[str, Any] = message[1]
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
