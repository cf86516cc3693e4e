"""The body of a batch worker process: load and warm the model, then predict.

Messages are pickled tuples over a :mod:`multiprocessing` pipe.  The worker
answers in the order it was asked, reading the next input as soon as it has
answered the last.  It ignores SIGINT and SIGTERM (the batch process decides
when to stop it) and, on Linux, dies with the batch process even when that
one is killed with SIGKILL.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any

from deepaas import exceptions

_PR_SET_PDEATHSIG = 1

#: An error as it crosses the pipe: (class name, message, errors, traceback).
WireError = tuple[str, str, dict[str, Any], str]


def error_to_wire(exc: exceptions.DeepaasError) -> WireError:
    """Flatten a domain error into a picklable tuple."""
    errors = exc.errors if isinstance(exc, exceptions.ArgumentsInvalid) else {}
    trace = exc.traceback if isinstance(exc, exceptions.ModelError) else ""
    return (type(exc).__name__, exc.message, errors, trace)


def error_from_wire(wire: WireError) -> exceptions.DeepaasError:
    """Rebuild the domain error a worker sent."""
    name, message, errors, trace = wire
    cls = getattr(exceptions, name, None)
    if cls is exceptions.ArgumentsInvalid:
        return exceptions.ArgumentsInvalid(errors)
    if cls is exceptions.ModelError:
        return exceptions.ModelError(message, traceback=trace)
    if isinstance(cls, type) and issubclass(cls, exceptions.DeepaasError):
        return cls(message)
    return exceptions.DeepaasError(message)


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def serve(
    conn: Connection, spec: Any, warm: bool, env: dict[str, str], log_level: int
) -> None:
    """Answer predict calls on ``conn`` until told to stop or orphaned."""
    os.environ.update(env)
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s worker[{os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    from deepaas.batch.calls import PredictCall
    from deepaas.model.loading import load_model
    from deepaas.model.wrapper import ModelWrapper, model_error

    try:
        wrapper = ModelWrapper(spec.name, load_model(spec))
        if warm:
            wrapper.warm()
        description = wrapper.describe()
    except BaseException as exc:  # every start-up failure goes to the parent
        message = (
            exc.message
            if isinstance(exc, exceptions.DeepaasError)
            else f"{type(exc).__name__}: {exc}"
        )
        conn.send(("failed", message, "".join(traceback.format_exception(exc))))
        return
    conn.send(("ready", description, os.getpid()))
    call: PredictCall | None = None
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
        call_id = message[1]
        reply: tuple[Any, ...]
        try:
            if call is None:
                raise exceptions.DeepaasError("the worker got an input before setup")
            if kind == "file":
                outcome = call.file(message[2], message[3])
            else:
                outcome = call.raw(message[2])
            reply = ("ok", call_id, outcome.body, outcome.content_type)
        except exceptions.DeepaasError as exc:
            reply = ("error", call_id, error_to_wire(exc))
        except BaseException as exc:  # SystemExit and the like from the model
            reply = ("error", call_id, error_to_wire(model_error(exc)))
        try:
            conn.send(reply)
        except (OSError, EOFError):
            return
