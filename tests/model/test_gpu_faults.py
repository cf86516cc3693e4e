"""Recognising a GPU its process can no longer use in what a model raised."""

from __future__ import annotations

import pytest
import torch

from deepaas.engine.processes import GPU_FAILED_EXIT, describe_exit
from deepaas.engine.processes.wire import error_from_wire, error_to_wire
from deepaas.exceptions import GpuContextLost, GpuOutOfMemory, ModelError
from deepaas.model.exception_chain import MAX_CHAIN_DEPTH
from deepaas.model.gpu_faults import (
    PROCESS_MUST_RESTART,
    gpu_failed_message,
    gpu_fault,
    is_gpu_context_lost,
    restated,
)
from deepaas.model.wrapper import model_error
from tests.fake_models.gpu_faults import ASSERT_TEXT, raise_gpu_fault
from tests.fake_models.memory import raise_out_of_memory

#: torch's text of a device-side assert, as a client reads it.
ASSERT_LINE = " ".join(ASSERT_TEXT.split())


def raised(func: object, *args: object) -> BaseException:
    try:
        func(*args)  # type: ignore[operator]
    except BaseException as exc:
        return exc
    raise AssertionError("nothing was raised")


def test_torchs_accelerator_error_of_a_device_side_assert_is_recognised() -> None:
    exc = raised(raise_gpu_fault, "assert")
    assert type(exc) is torch.AcceleratorError
    assert isinstance(exc, RuntimeError)
    assert is_gpu_context_lost(exc)
    assert gpu_fault(str(exc)) == "device-side assert triggered"
    assert gpu_failed_message(exc) == (
        f"the GPU failed: {ASSERT_LINE}; this worker cannot use its GPU any "
        "more and is replaced"
    )


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("CUDA error: device-side assert triggered", "device-side assert triggered"),
        (
            "CUDA error: an illegal memory access was encountered\nCUDA kernel "
            "errors might be asynchronously reported at some other API call",
            "illegal memory access",
        ),
        ("CUDA error: unspecified launch failure", "unspecified launch failure"),
        ("CUDA error: misaligned address", "misaligned address"),
        (
            "CUDA error: an illegal instruction was encountered",
            "illegal instruction",
        ),
        (
            "CUDA error: uncorrectable ECC error encountered",
            "uncorrectable ECC error",
        ),
        ("CUDA error: unknown error", "unknown CUDA error"),
        (
            "CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling "
            "`cublasSgemm( handle, opa, opb, m, n, k, &alpha, a, lda, b, ldb, "
            "&beta, c, ldc)`",
            "cuBLAS execution failed",
        ),
        (
            "cudaErrorIllegalAddress: an illegal memory access was encountered",
            "illegal memory access",
        ),
        (
            "cudaErrorAssert: device-side assert triggered",
            "device-side assert triggered",
        ),
        (
            "cudaErrorLaunchFailure: unspecified launch failure",
            "unspecified launch failure",
        ),
        ("cudaErrorMisalignedAddress: misaligned address", "misaligned address"),
        (
            "INTERNAL: CUDA error: CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory "
            "access was encountered",
            "illegal memory access",
        ),
    ],
    ids=[
        "assert", "illegal-access", "launch-failure", "misaligned",
        "illegal-instruction", "ecc", "unknown", "cublas", "cupy-illegal-address",
        "cupy-assert", "cupy-launch-failure", "cupy-misaligned", "xla-driver",
    ],
)  # fmt: skip
def test_frameworks_texts_of_a_lost_cuda_context_are_recognised(
    text: str, fault: str
) -> None:
    assert is_gpu_context_lost(RuntimeError(text))
    assert gpu_fault(text) == fault
    error = model_error(RuntimeError(text))
    assert type(error) is GpuContextLost
    assert error.message.startswith(f"the GPU failed: {' '.join(text.split())}; ")


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"),
        # Errors of one call only: the context survives them.
        torch.AcceleratorError("CUDA error: invalid argument"),
        torch.AcceleratorError(
            "CUDA error: no kernel image is available for execution on the device"
        ),
        RuntimeError("unknown error"),  # not CUDA's
        ValueError("misaligned address in the input file"),
    ],
    ids=["shapes", "invalid-argument", "no-kernel-image", "unknown", "misaligned"],
)
def test_other_errors_are_not_taken_for_a_lost_gpu(exc: Exception) -> None:
    assert not is_gpu_context_lost(exc)
    assert type(model_error(exc)) is ModelError


def test_running_out_of_gpu_memory_is_not_a_lost_gpu() -> None:
    for exc in (
        raised(raise_out_of_memory),
        RuntimeError("CUDA error: out of memory"),
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `x`"),
        torch.AcceleratorError("CUDA error: out of memory"),
    ):
        assert not is_gpu_context_lost(exc), exc
        assert type(model_error(exc)) is GpuOutOfMemory


def test_an_error_wrapped_by_the_model_is_recognised_with_torchs_text() -> None:
    def wraps() -> None:
        try:
            raise_gpu_fault("assert")
        except RuntimeError as exc:
            raise ValueError("inference failed") from exc

    def while_handling() -> None:
        try:
            raise_gpu_fault("illegal-access")
        except RuntimeError:
            raise KeyError("cleanup failed") from None

    assert gpu_failed_message(raised(wraps)).startswith(
        "the GPU failed: CUDA error: device-side assert triggered CUDA kernel"
    )
    assert gpu_failed_message(raised(while_handling)).startswith(
        "the GPU failed: CUDA error: an illegal memory access was encountered "
    )
    for exc in (raised(wraps), raised(while_handling)):
        assert type(model_error(exc)) is GpuContextLost


def test_the_chain_is_followed_only_so_deep() -> None:
    def chain(links: int) -> BaseException:
        exc: BaseException = RuntimeError("CUDA error: unspecified launch failure")
        for i in range(links):
            outer = ValueError(f"wrapper {i}")
            outer.__cause__ = exc
            exc = outer
        return exc

    assert is_gpu_context_lost(chain(MAX_CHAIN_DEPTH))
    assert not is_gpu_context_lost(chain(MAX_CHAIN_DEPTH + 1))


def test_a_lost_context_wins_over_running_out_of_memory_in_one_chain() -> None:
    exc = RuntimeError("CUDA error: an illegal memory access was encountered")
    exc.__context__ = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert type(model_error(exc)) is GpuContextLost


def test_model_error_answers_gpu_context_lost_with_its_traceback() -> None:
    error = model_error(raised(raise_gpu_fault, "assert"))
    assert isinstance(error, GpuContextLost)
    assert isinstance(error, ModelError)
    assert error.status == 500  # what DEEPaaS 2.x answers for any model error
    assert error.to_json() == {
        "message": f"the GPU failed: {ASSERT_LINE}; this worker cannot use its "
        "GPU any more and is replaced"
    }
    assert "raise_gpu_fault" in error.traceback
    # It crosses the worker's socket as itself, traceback included.
    back = error_from_wire(error_to_wire(error))
    assert type(back) is GpuContextLost
    assert (back.message, back.traceback) == (error.message, error.traceback)


def test_a_process_that_runs_the_model_itself_says_it_must_be_restarted() -> None:
    message = gpu_failed_message(RuntimeError("CUDA error: misaligned address"))
    assert restated(message, PROCESS_MUST_RESTART) == (
        "the GPU failed: CUDA error: misaligned address; this process cannot "
        "use its GPU any more and must be restarted"
    )


def test_the_exit_of_a_worker_whose_gpu_failed_is_described() -> None:
    assert describe_exit(GPU_FAILED_EXIT) == (
        f"it exited with code {GPU_FAILED_EXIT}: its GPU failed and it could "
        "no longer use it"
    )
    assert describe_exit(1) == "it exited with code 1"
