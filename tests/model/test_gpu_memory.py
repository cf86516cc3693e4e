"""Recognising an exhausted GPU in what a model raised, and releasing its cache."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
import torch

from deepaas.engine.processes.wire import error_from_wire, error_to_wire
from deepaas.exceptions import GpuOutOfMemory, ModelError
from deepaas.model.exception_chain import MAX_CHAIN_DEPTH
from deepaas.model.gpu_memory import (
    is_gpu_out_of_memory,
    out_of_memory_message,
    recover_from_out_of_memory,
    release_cached_gpu_memory,
)
from deepaas.model.wrapper import model_error
from tests.conftest import ROOT
from tests.fake_models.memory import TORCH_MESSAGE, raise_out_of_memory


def raised(func: object) -> BaseException:
    try:
        func()  # type: ignore[operator]
    except BaseException as exc:
        return exc
    raise AssertionError("nothing was raised")


def test_torch_out_of_memory_error_is_recognised() -> None:
    exc = raised(raise_out_of_memory)
    assert isinstance(exc, torch.OutOfMemoryError)
    assert torch.cuda.OutOfMemoryError is torch.OutOfMemoryError
    assert is_gpu_out_of_memory(exc)
    assert out_of_memory_message(exc) == f"out of GPU memory: {TORCH_MESSAGE}"


@pytest.mark.parametrize(
    "text",
    [
        "CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.78 GiB total "
        "capacity; 14.21 GiB already allocated)",
        "CUDA error: out of memory\nCUDA kernel errors might be asynchronously "
        "reported at some other API call",
        "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
        "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 17179869184 bytes.",
    ],
    ids=["torch-before-1.13", "cuda-call", "cublas", "xla"],
)
def test_frameworks_texts_of_an_exhausted_gpu_are_recognised(text: str) -> None:
    assert is_gpu_out_of_memory(RuntimeError(text))


def test_cupy_out_of_memory_error_is_recognised_by_its_class() -> None:
    # CuPy is not installed here: a class named and placed as CuPy's is.
    cupy_error = type("OutOfMemoryError", (MemoryError,), {})
    cupy_error.__module__ = "cupy.cuda.memory"
    assert is_gpu_out_of_memory(cupy_error("Out of memory allocating 1,024 bytes"))


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"),
        MemoryError(),  # the host's memory, not the GPU's
        ValueError("out of range"),
        type("OutOfMemoryError", (Exception,), {"__module__": "mylib"})("full"),
    ],
    ids=["shapes", "host-memory", "value", "other-library"],
)
def test_other_errors_are_not_taken_for_an_exhausted_gpu(exc: Exception) -> None:
    assert not is_gpu_out_of_memory(exc)
    assert type(model_error(exc)) is ModelError


def test_an_error_wrapped_by_the_model_is_recognised_with_torchs_text() -> None:
    def wraps() -> None:
        try:
            raise_out_of_memory()
        except RuntimeError as exc:
            raise ValueError("inference failed") from exc

    def while_handling() -> None:
        try:
            raise_out_of_memory()
        except RuntimeError:
            raise KeyError("cleanup failed") from None

    for exc in (raised(wraps), raised(while_handling)):
        assert is_gpu_out_of_memory(exc)
        assert out_of_memory_message(exc) == f"out of GPU memory: {TORCH_MESSAGE}"


def test_the_chain_is_followed_only_so_deep() -> None:
    def chain(links: int) -> BaseException:
        exc: BaseException = RuntimeError("CUDA out of memory.")
        for i in range(links):
            outer = ValueError(f"wrapper {i}")
            outer.__cause__ = exc
            exc = outer
        return exc

    assert is_gpu_out_of_memory(chain(MAX_CHAIN_DEPTH))
    assert not is_gpu_out_of_memory(chain(MAX_CHAIN_DEPTH + 1))
    looped = ValueError("a")
    looped.__context__ = ValueError("b")
    looped.__context__.__context__ = looped  # a cycle ends, answering no
    assert not is_gpu_out_of_memory(looped)


def test_the_message_collapses_the_frameworks_whitespace() -> None:
    exc = RuntimeError("CUDA out of memory.\n  Tried to allocate\t2.00 GiB.\n")
    assert out_of_memory_message(exc) == (
        "out of GPU memory: CUDA out of memory. Tried to allocate 2.00 GiB."
    )


def test_model_error_answers_gpu_out_of_memory_with_its_traceback() -> None:
    error = model_error(raised(raise_out_of_memory))
    assert isinstance(error, GpuOutOfMemory)
    assert isinstance(error, ModelError)
    assert error.status == 500  # what DEEPaaS 2.x answers for any model error
    assert error.to_json() == {"message": f"out of GPU memory: {TORCH_MESSAGE}"}
    assert "raise_out_of_memory" in error.traceback
    # It crosses the worker's socket as itself, traceback included.
    back = error_from_wire(error_to_wire(error))
    assert type(back) is GpuOutOfMemory
    assert (back.message, back.traceback) == (error.message, error.traceback)


_PROBE = """
import json, sys
from deepaas.model.gpu_memory import release_cached_gpu_memory
{before}
released = release_cached_gpu_memory()
torch = sys.modules.get("torch")
print(json.dumps({{
    "released": released,
    "torch": torch is not None,
    "cuda": bool(torch and torch.cuda.is_initialized()),
}}))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("before", "torch_loaded"),
    [("", False), ("import torch", True)],
    ids=["torch-not-imported", "torch-imported-no-cuda"],
)
def test_release_touches_no_framework_the_process_did_not_use(
    before: str, torch_loaded: bool
) -> None:
    # A fresh interpreter: this one has torch imported already.
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(before=before)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "released": None,
        "torch": torch_loaded,
        "cuda": False,
    }


def test_recovering_logs_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    assert not torch.cuda.is_initialized()
    with caplog.at_level(logging.WARNING, logger="deepaas.model.gpu_memory"):
        assert recover_from_out_of_memory("resnet", "predict") is None
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "model 'resnet': out of GPU memory in predict; "
            "no cached GPU memory to release",
        )
    ]
    assert release_cached_gpu_memory() is None
    assert not torch.cuda.is_initialized()
