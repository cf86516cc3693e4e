"""The body of a spawned serving worker.

A worker sets its environment (e.g. ``CUDA_VISIBLE_DEVICES``) before it
imports the model, so device bindings hold for frameworks that read them at
import.  It exits when the API process says ``stop`` or goes away (end of
file on its socket, or, on Linux, the parent's death signal), so no worker
outlives its server.  How it starts (spawn, prologue, the
``ready``/``failed`` handshake) is :mod:`deepaas.engine.processes`; what
is here is its loop.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from deepaas.engine.batching import run_batch
from deepaas.engine.executor import jsonable_arguments
from deepaas.engine.probe import model_facts
from deepaas.engine.processes import exit_for_failed_gpu, report_ready, start_child
from deepaas.engine.processes.wire import (
    BlockingChannel,
    error_to_wire,
    is_wire_error,
)
from deepaas.exceptions import DeepaasError, GpuContextLost, GpuOutOfMemory
from deepaas.model.gpu_faults import gpu_fault
from deepaas.model.gpu_memory import recover_from_out_of_memory
from deepaas.model.wrapper import RawArguments, load_wrapped, model_error


def run_worker(
    sock: socket.socket,
    spec: Any,
    warm: bool,
    control: socket.socket | None = None,
    describe_first: bool = False,
) -> None:
    """Serve calls on ``sock`` until told to stop.

    It runs after its prologue (environment, signals, logging: see
    :func:`deepaas.engine.processes.worker_prologue`).  ``control``
    carries the calls that must not wait behind predictions
    (training-argument validation): a thread of their own answers them.

    ``describe_first``: this worker also does the start-up probe's job
    (on a machine without GPUs, see :mod:`deepaas.engine.probe`).  Once the
    model is imported it reports what the model declares (``facts``) and
    waits for the pool's answer: ``go`` with the environment the model's
    placement gives it (set before ``warm()``), or ``stop`` when the model
    is to run elsewhere.  The model is then imported once, not twice.
    """
    channel = BlockingChannel(sock)
    started = start_child(
        channel.send, spec.name, lambda: _start(channel, spec, warm, describe_first)
    )
    if started is None or started is _STOPPED:
        return
    wrapper, description = started
    if control is not None:
        threading.Thread(
            target=_answer_control,
            args=(BlockingChannel(control), wrapper),
            name="deepaas-validate",
            daemon=True,
        ).start()
    report_ready(channel.send, description)
    _answer_calls(channel, wrapper, _ALL_CALLS)


#: What :func:`_start` answers when the pool says the model runs elsewhere.
_STOPPED = object()


def _start(
    channel: BlockingChannel, spec: Any, warm: bool, describe_first: bool
) -> Any:
    """Import (and warm) the model: ``(wrapper, description)``, or
    :data:`_STOPPED` when a describing worker is told to stop."""
    if describe_first:
        wrapper = load_wrapped(spec)
        channel.send(("facts", model_facts(spec, wrapper)))
        answer = _next_message(channel)
        if answer[0] != "go":
            return _STOPPED
        os.environ.update(answer[1])
        if warm:
            wrapper.warm()
    else:
        wrapper = load_wrapped(spec, warm=warm)
    return wrapper, wrapper.describe()


def _next_message(channel: BlockingChannel) -> tuple[Any, ...]:
    """The next message, or ``("stop",)`` when the API process went away."""
    try:
        message: tuple[Any, ...] = channel.recv()
    except (EOFError, OSError):
        return ("stop",)
    return message


#: Every call the main socket takes; the control socket takes validations only.
_ALL_CALLS = frozenset({"predict", "predict_batch", "validate_train"})
_CONTROL_CALLS = frozenset({"validate_train"})


def _answer_control(channel: BlockingChannel, wrapper: Any) -> None:
    """Answer training-argument validations until the socket closes."""
    _answer_calls(channel, wrapper, _CONTROL_CALLS)


def _answer_calls(
    channel: BlockingChannel, wrapper: Any, kinds: frozenset[str]
) -> None:
    """Answer the calls of ``kinds`` on ``channel`` until it closes or says stop."""
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
            if kind not in kinds:
                raise DeepaasError(f"unknown worker call {kind!r}")
            if kind == "predict":  # (pairs, json_body, accept) -> (body, media type)
                raw = RawArguments(pairs=message[2], json_body=message[3])
                outcome = wrapper.run_predict(raw, message[4])
                result = (outcome.body, outcome.content_type)
            elif kind == "predict_batch":
                result = [
                    error_to_wire(o) if isinstance(o, DeepaasError) else o
                    for o in run_batch(wrapper, message[2])
                ]
            else:  # validate_train
                result = jsonable_arguments(wrapper.parse_train_args(message[2]))
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
        # Answered: a worker whose CUDA context is lost leaves now, before
        # it takes another call, and its pool (which read the same answer)
        # starts a fresh one.
        lost = lost_gpu_message(reply)
        if lost is not None and kind in _PREDICTIONS:
            exit_for_failed_gpu(wrapper.name, kind, gpu_fault(lost) or "CUDA fault")
        # Out of the except blocks, the failed call's exception, its frames
        # and their tensors are unreferenced: its cached memory can go back.
        if _ran_out_of_gpu_memory(reply):
            recover_from_out_of_memory(wrapper.name, kind)


#: The calls that run the model on its GPU.
_PREDICTIONS = frozenset({"predict", "predict_batch"})


def _wire_errors(reply: tuple[Any, ...]) -> list[Any]:
    """The errors a reply carries: its own, or, for a batch, its answers'."""
    if reply[0] == "error":
        return [reply[2]]
    answers = reply[2]
    if not isinstance(answers, list):
        return []
    return [a for a in answers if is_wire_error(a)]


def _ran_out_of_gpu_memory(reply: tuple[Any, ...]) -> bool:
    """Whether a reply (or, for a batch, any of its answers) is a GpuOutOfMemory."""
    return any(e[0] == GpuOutOfMemory.__name__ for e in _wire_errors(reply))


def lost_gpu_message(reply: tuple[Any, ...]) -> str | None:
    """The message of the :class:`GpuContextLost` a reply (or, for a batch,
    any of its answers) carries, else None.

    The worker reads it to know it must leave, the pool to know why it did.
    """
    for error in _wire_errors(reply):
        if error[0] == GpuContextLost.__name__:
            return str(error[1])
    return None
