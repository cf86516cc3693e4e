"""The body of a spawned worker process: load, warm, then answer calls.

The worker sets its environment (e.g. ``CUDA_VISIBLE_DEVICES``) before it
imports the model, so device bindings hold for frameworks that read them at
import.  It exits when the API process says ``stop`` or goes away (the pipe
reaches end-of-file), so no worker outlives its server.
"""

from __future__ import annotations

import logging
import os
import signal
import traceback
from multiprocessing.connection import Connection
from typing import Any

from deepaas.exceptions import DeepaasError
from deepaas.model._wire import error_to_wire


def run_worker(
    conn: Connection,
    spec: Any,
    warm: bool,
    env: dict[str, str],
    log_level: int,
) -> None:
    """Serve calls on ``conn`` until told to stop."""
    os.environ.update(env)
    # Ctrl-C reaches the whole process group; the API process decides when
    # workers stop, so they ignore it and finish the call in hand.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s worker[{os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    from deepaas.model.execution import jsonable_arguments
    from deepaas.model.loading import load_model
    from deepaas.model.wrapper import ModelWrapper, model_error

    try:
        wrapper = ModelWrapper(spec.name, load_model(spec))
        if warm:
            wrapper.warm()
        description = wrapper.describe()
    except BaseException as exc:  # report every start-up failure to the parent
        message = exc.message if isinstance(exc, DeepaasError) else (
            f"{type(exc).__name__}: {exc}"
        )
        conn.send(("failed", message, "".join(traceback.format_exception(exc))))
        return
    conn.send(("ready", description, os.getpid()))

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        kind = message[0]
        if kind == "stop":
            return
        call_id = message[1]
        try:
            result: Any
            if kind == "predict":
                result = wrapper.run_predict(message[2], message[3])
            elif kind == "predict_batch":
                result = [
                    error_to_wire(o) if isinstance(o, DeepaasError) else o
                    for o in wrapper.run_predict_batch(message[2])
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
            conn.send(reply)
        except Exception as exc:  # an answer that cannot be pickled
            conn.send(
                ("error", call_id, error_to_wire(model_error(exc)))
            )
