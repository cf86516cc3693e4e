"""A model call that ran out of GPU memory: recognising it, and recovering.

Frameworks report an exhausted GPU each in their own way (torch's
``OutOfMemoryError``, older torch's ``RuntimeError``, cuBLAS, CuPy, XLA).
deepaas answers such a call with :class:`deepaas.exceptions.GpuOutOfMemory`
rather than a generic model error, and the process that ran it gives the
GPU memory its framework keeps cached back to the driver
(:func:`release_cached_gpu_memory`): torch's caching allocator keeps every
block it ever got, so a worker whose call failed would otherwise hold the
peak of that call for good, and other processes on the same GPU (other
models' workers) could then fail to allocate.

Nothing here imports a framework: exceptions are recognised by their
classes' names and modules and by their text, and memory is released only
through frameworks the model already loaded.
"""

from __future__ import annotations

import gc
import logging
import re
import sys
from typing import Any

from deepaas.model.exception_chain import exception_chain, exception_text, one_line

LOG = logging.getLogger(__name__)

#: Exception classes that mean "out of GPU memory", as (module prefix, name).
_OUT_OF_MEMORY_CLASSES = (
    ("torch", "OutOfMemoryError"),  # torch >= 1.13 (torch.cuda.OutOfMemoryError)
    ("cupy", "OutOfMemoryError"),  # cupy.cuda.memory.OutOfMemoryError
)

#: Texts that mean "out of GPU memory" in exceptions of generic classes.
_OUT_OF_MEMORY_TEXT = re.compile(
    r"CUDA out of memory"  # torch < 1.13: RuntimeError("CUDA out of memory. ...")
    r"|CUDA error: out of memory"  # a CUDA call's cudaErrorMemoryAllocation
    r"|CUBLAS_STATUS_ALLOC_FAILED"  # cuBLAS could not allocate its workspace
    r"|RESOURCE_EXHAUSTED:\s*Out of memory",  # JAX / XLA
    re.IGNORECASE,
)


def _is_out_of_memory_itself(exc: BaseException) -> bool:
    for cls in type(exc).__mro__:
        module = cls.__module__ or ""
        for prefix, name in _OUT_OF_MEMORY_CLASSES:
            if cls.__name__ == name and (
                module == prefix or module.startswith(prefix + ".")
            ):
                return True
    return _OUT_OF_MEMORY_TEXT.search(exception_text(exc)) is not None


def out_of_memory_cause(exc: BaseException) -> BaseException | None:
    """The exception in ``exc``'s chain that says the GPU ran out of memory.

    ``exc`` itself, or one it was raised from or while handling (a model
    that wraps the framework's error in its own), up to
    :data:`~deepaas.model.exception_chain.MAX_CHAIN_DEPTH` links; None when
    none does.
    """
    for current in exception_chain(exc):
        if _is_out_of_memory_itself(current):
            return current
    return None


def is_gpu_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` (or one it was raised from) says the GPU ran out of memory."""
    return out_of_memory_cause(exc) is not None


def out_of_memory_message(exc: BaseException) -> str:
    """The one-line message a client gets: ``out of GPU memory: <framework's text>``.

    The framework's text is kept (torch's names the GPU, what was asked and
    what was free), its whitespace collapsed to single spaces.
    """
    return f"out of GPU memory: {one_line(out_of_memory_cause(exc) or exc)}"


def release_cached_gpu_memory() -> int | None:
    """Give the GPU memory this process's frameworks keep cached back to the driver.

    Called once the failed call's exception and traceback are no longer
    referenced: their frames hold the model's tensors, which
    ``gc.collect()`` frees before torch's cache is emptied.  Only a
    framework already imported, and (torch) with CUDA already initialised,
    is touched, so that a CPU model never imports torch nor creates a CUDA
    context here.  Returns the bytes torch released (its reserved memory
    before minus after; 0 when nothing was cached), or None when no
    framework here holds GPU memory.
    """
    torch: Any = sys.modules.get("torch")
    cupy: Any = sys.modules.get("cupy")
    torch_on_gpu = torch is not None and _cuda_initialized(torch)
    if not torch_on_gpu and cupy is None:
        return None
    gc.collect()
    released: int | None = None
    if torch_on_gpu:
        before = int(torch.cuda.memory_reserved())
        torch.cuda.empty_cache()
        released = max(0, before - int(torch.cuda.memory_reserved()))
    if cupy is not None:
        try:
            cupy.get_default_memory_pool().free_all_blocks()
            cupy.get_default_pinned_memory_pool().free_all_blocks()
        except Exception:  # a CuPy without a usable GPU: nothing was cached
            return released
        released = released or 0
    return released


def _cuda_initialized(torch: Any) -> bool:
    """Whether this process's torch has a CUDA context (never creates one)."""
    cuda = getattr(torch, "cuda", None)
    is_initialized = getattr(cuda, "is_initialized", None)
    try:
        return bool(is_initialized()) if callable(is_initialized) else False
    except Exception:
        return False


def recover_from_out_of_memory(model: str, method: str) -> int | None:
    """Release the cached GPU memory after ``model``'s ``method`` ran out of it,
    and say so in this process's log (one WARNING line).

    The process stays as it is and takes its next call: the failed call's
    tensors are gone once its exception is, so restarting would only cost
    the model's start-up.  Returns what :func:`release_cached_gpu_memory`
    returned.
    """
    released = release_cached_gpu_memory()
    if released:
        what = f"released {released / 2**20:.1f} MiB of cached GPU memory"
    else:
        what = "no cached GPU memory to release"
    LOG.warning("model %r: out of GPU memory in %s; %s", model, method, what)
    return released


__all__ = [
    "is_gpu_out_of_memory",
    "out_of_memory_cause",
    "out_of_memory_message",
    "recover_from_out_of_memory",
    "release_cached_gpu_memory",
]
