"""The body of a batch worker process: load and warm the model, then predict.

Messages are pickled tuples over a :mod:`multiprocessing` pipe.  Inputs come in
chunks (``("files", chunk id, [(path, media type, original name, other
files), ...], copies)`` or ``("args", chunk id, [raw arguments, ...],
copies)``), answered by one ``("done", chunk id, [result, ...])`` message
each, in the order sent: a few system calls per chunk instead of per input.
Every file an input brings is that input's own temporary copy, made ahead
and removed by the batch process; ``copies`` lists each input's ``(copy,
original)`` pairs, so that a copy the model's previous call removed (a
model may empty its temporary folder) is made again before the input's
turn.  Around
each input the worker counts in ``progress`` (shared memory): ``2n + 1`` while
its n-th input is in hand, ``2n + 2`` once answered, so that the batch
process knows which input was in hand if the worker dies.

An input whose GPU failed (:class:`~deepaas.exceptions.GpuContextLost`:
every later CUDA call of this process would fail) ends its chunk early: the
answers so far, that one's included, go back in a shorter ``done``, and the
worker exits (:func:`deepaas.engine.processes.exit_for_failed_gpu`); the
batch process hands the chunk's other inputs to a fresh worker.

It ignores SIGINT and SIGTERM (the batch process decides when to stop it)
and, on Linux, dies with the batch process even when that one is killed
with SIGKILL.
"""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from typing import Any

from deepaas import exceptions
from deepaas.engine.processes import exit_for_failed_gpu, report_ready, start_child
from deepaas.engine.processes.wire import error_to_wire
from deepaas.provenance.digests import sha256_bytes


def serve(conn: Connection, progress: Any, spec: Any, warm: bool) -> None:
    """Answer predict calls on ``conn`` until told to stop or orphaned.

    It runs after its prologue (:func:`deepaas.engine.processes.
    worker_prologue`, SIGTERM disregarded too); its start-up failure goes
    to the batch process unnamed (``named=False``: the pool names the model).
    """
    from deepaas.batch.calls import PredictCall
    from deepaas.exceptions import GpuContextLost, GpuOutOfMemory
    from deepaas.model.gpu_faults import gpu_fault
    from deepaas.model.gpu_memory import recover_from_out_of_memory

    loaded = start_child(conn.send, spec.name, lambda: _load(spec, warm), named=False)
    if loaded is None:
        return
    wrapper, description = loaded
    report_ready(conn.send, description)
    call: PredictCall | None = None
    started = 0
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        kind = message[0]
        if kind == "stop":
            return
        if kind == "setup":
            call = PredictCall(
                wrapper, fixed=message[1], file_arg=message[2], accept=message[3]
            )
            continue
        chunk_id, requests, copies = message[1], message[2], message[3]
        results: list[tuple[Any, ...]] = []
        lost: str | None = None
        for request, own in zip(requests, copies, strict=True):
            # Which input is in hand, for the batch process to blame if this
            # process dies: shared memory, no system call.
            progress.value = 2 * started + 1
            result = _one(call, kind, request, own)
            results.append(result)
            started += 1
            progress.value = 2 * started
            failed = result[1][0] if result[0] == "error" else None
            if failed == GpuContextLost.__name__:
                lost = gpu_fault(result[1][1]) or "CUDA fault"
                break  # the chunk's other inputs go to a fresh worker
            if failed == GpuOutOfMemory.__name__:
                # _one has returned: the call's exception and its frames are
                # unreferenced, so its cached GPU memory can go back.
                recover_from_out_of_memory(spec.name, "predict")
        try:
            conn.send(("done", chunk_id, results))
        except (OSError, EOFError):
            return
        if lost is not None:
            exit_for_failed_gpu(spec.name, "predict", lost)


def _load(spec: Any, warm: bool) -> tuple[Any, Any]:
    """The model, loaded (and warmed), and its description."""
    from deepaas.model.wrapper import load_wrapped

    wrapper = load_wrapped(spec, warm=warm)
    return wrapper, wrapper.describe()


def _one(
    call: Any, kind: str, request: Any, copies: list[tuple[str, str]]
) -> tuple[Any, ...]:
    """``("ok", body, media type, digests, seconds)`` or ``("error", wire,
    digests, seconds)``; ``digests`` are the SHA-256s of the input's files
    (read here, in parallel across workers, before the model may change
    them) and of the answer (see :func:`deepaas.batch.copies.digests_of`)."""
    from deepaas.batch.copies import digests_of, restore
    from deepaas.model.wrapper import model_error

    start = time.perf_counter()
    digests: dict[str, Any] = {}
    try:
        if call is None:
            raise exceptions.DeepaasError("the worker got inputs before its set-up")
        restore(copies)
        digests = digests_of(copies)
        if kind == "files":
            outcome = call.file(*request)
        else:
            outcome = call.raw(request)
        digests["output"] = sha256_bytes(outcome.body)
        return (
            "ok",
            outcome.body,
            outcome.content_type,
            digests,
            time.perf_counter() - start,
        )
    except exceptions.DeepaasError as exc:
        return ("error", error_to_wire(exc), digests, time.perf_counter() - start)
    except BaseException as exc:  # SystemExit and the like from the model
        wire = error_to_wire(model_error(exc))
        return ("error", wire, digests, time.perf_counter() - start)
