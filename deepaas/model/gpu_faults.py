"""A model call after which its process can no longer use its GPU.

Some CUDA errors are "sticky": after a device-side assert, an illegal
memory access, an unspecified launch failure, a misaligned address, an
illegal instruction, an uncorrectable ECC error (and a few more, below), the
CUDA context of the process is corrupt, and every later CUDA call in that
process fails with the same error.  Nothing inside the process can repair
it; only a new process gets a new context.  deepaas answers such a call
with :class:`deepaas.exceptions.GpuContextLost`, and the worker that ran it
exits after answering so that its pool starts a fresh one
(:mod:`deepaas.engine.processes.lost_gpu`).

Recognised, without importing any framework, by the text CUDA gives each
of these errors, which every framework passes on: torch's
``AcceleratorError`` (torch >= 2.8) and older ``RuntimeError``
(``CUDA error: device-side assert triggered``), CuPy's
``cudaErrorIllegalAddress: ...``, the driver API's
``CUDA_ERROR_ILLEGAL_ADDRESS`` (JAX/XLA, Numba), and cuBLAS's
``CUBLAS_STATUS_EXECUTION_FAILED`` (a kernel of cuBLAS failed to run,
usually an earlier asynchronous fault showing up).  ``CUDA error: unknown
error`` counts too: the driver reports it when the GPU itself misbehaved
(e.g. fell off the bus), and a worker replaced for nothing costs a restart,
while one kept with a broken context fails every call it takes.

Running out of GPU memory is *not* one of these: the context survives it,
and :mod:`deepaas.model.gpu_memory` recovers from it in place.  Nor are
CUDA errors that concern one call only (``invalid argument``, ``no kernel
image is available``), although torch raises them as ``AcceleratorError``
too: the class alone says nothing, the text decides.
"""

from __future__ import annotations

import re

from deepaas.model.exception_chain import exception_chain, exception_text, one_line

#: What a worker says when it answers such a call (it is then replaced).
WORKER_REPLACED = "this worker cannot use its GPU any more and is replaced"
#: What a process that runs the model itself says (nothing can replace it).
PROCESS_MUST_RESTART = "this process cannot use its GPU any more and must be restarted"
#: What a training says (its process ends with it).
TRAINING_ENDS = "the training's process cannot use its GPU any more and ends"

#: Each fault as (short name, what the frameworks say): CUDA's runtime text
#: (torch, and CuPy after the name), the runtime's name (CuPy) and the
#: driver's name (JAX/XLA, Numba, PyCUDA).
_FAULTS = (
    (
        "device-side assert triggered",
        r"device-side assert triggered|cudaErrorAssert\b|CUDA_ERROR_ASSERT\b",
    ),
    (
        "illegal memory access",
        r"an illegal memory access was encountered|cudaErrorIllegalAddress\b"
        r"|CUDA_ERROR_ILLEGAL_ADDRESS\b",
    ),
    (
        "unspecified launch failure",
        r"unspecified launch failure|cudaErrorLaunchFailure\b"
        r"|CUDA_ERROR_LAUNCH_FAILED\b",
    ),
    (
        "misaligned address",
        r"CUDA error: misaligned address|cudaErrorMisalignedAddress\b"
        r"|CUDA_ERROR_MISALIGNED_ADDRESS\b",
    ),
    (
        "illegal instruction",
        r"an illegal instruction was encountered|cudaErrorIllegalInstruction\b"
        r"|CUDA_ERROR_ILLEGAL_INSTRUCTION\b",
    ),
    (
        "uncorrectable ECC error",
        r"uncorrectable ECC error encountered|cudaErrorECCUncorrectable\b"
        r"|CUDA_ERROR_ECC_UNCORRECTABLE\b",
    ),
    (
        "hardware stack error",
        r"CUDA error: hardware stack error|cudaErrorHardwareStackError\b"
        r"|CUDA_ERROR_HARDWARE_STACK_ERROR\b",
    ),
    (
        "invalid program counter",
        r"CUDA error: invalid program counter|cudaErrorInvalidPc\b"
        r"|CUDA_ERROR_INVALID_PC\b",
    ),
    (
        "kernel launch timed out",
        r"the launch timed out and was terminated|cudaErrorLaunchTimeout\b"
        r"|CUDA_ERROR_LAUNCH_TIMEOUT\b",
    ),
    ("cuBLAS execution failed", r"CUBLAS_STATUS_EXECUTION_FAILED"),
    (
        "unknown CUDA error",
        r"CUDA error: unknown error|cudaErrorUnknown\b|CUDA_ERROR_UNKNOWN\b",
    ),
)
_FAULT_PATTERNS = tuple((name, re.compile(text)) for name, text in _FAULTS)


def gpu_fault(text: str) -> str | None:
    """The short name of the sticky CUDA fault ``text`` reports, else None.

    E.g. ``"device-side assert triggered"`` for torch's ``CUDA error:
    device-side assert triggered ...``; log lines name the fault with it.
    """
    for name, pattern in _FAULT_PATTERNS:
        if pattern.search(text):
            return name
    return None


def context_lost_cause(exc: BaseException) -> BaseException | None:
    """The exception in ``exc``'s chain that reports a sticky CUDA fault.

    ``exc`` itself, or one it was raised from or while handling (a model
    that wraps the framework's error in its own); None when none does.
    """
    for current in exception_chain(exc):
        if gpu_fault(exception_text(current)) is not None:
            return current
    return None


def is_gpu_context_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or one it was raised from) left its process's CUDA
    context unusable."""
    return context_lost_cause(exc) is not None


def gpu_failed_message(exc: BaseException, consequence: str = WORKER_REPLACED) -> str:
    """``the GPU failed: <framework's text>; <consequence>``, on one line.

    The framework's text is kept whole (torch's says how to debug it), its
    whitespace collapsed to single spaces.
    """
    text = one_line(context_lost_cause(exc) or exc)
    return f"the GPU failed: {text}; {consequence}"


def restated(message: str, consequence: str) -> str:
    """A :func:`gpu_failed_message` with another ``consequence`` than a
    worker's (for a process that runs the model itself)."""
    head = message.removesuffix(f"; {WORKER_REPLACED}")
    return f"{head}; {consequence}"


__all__ = [
    "PROCESS_MUST_RESTART",
    "TRAINING_ENDS",
    "WORKER_REPLACED",
    "context_lost_cause",
    "gpu_failed_message",
    "gpu_fault",
    "is_gpu_context_lost",
    "restated",
]
