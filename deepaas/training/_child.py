"""The body of a training process: its own session, its own log, one train().

The server starts this with the ``spawn`` method.  Before anything else the
process starts a session (so that cancelling it can signal every process the
model starts), points file descriptors 1 and 2 at the training's log (so
that output of C code and of child processes lands there too) and sets its
environment (e.g. ``CUDA_VISIBLE_DEVICES``) before the model is imported.

SIGTERM raises ``SystemExit`` in the model's code, so its ``finally`` blocks
run; the server kills what is left after the grace period.  A thread watches
a pipe from the server: when the server dies, the training stops itself
rather than run on unobserved.  The outcome is written to ``outcome.json``
atomically; the server reads it once the process has exited.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import json
import logging
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from deepaas.exceptions import DeepaasError, ModelError
from deepaas.model.loading import ModelSpec
from deepaas.model.wrapper import RawArguments, load_wrapped, to_json_bytes

LOG = logging.getLogger("deepaas.training")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclasses.dataclass(frozen=True)
class ChildJob:
    """What a training process needs; small and picklable."""

    uuid: str
    spec: ModelSpec
    raw: RawArguments
    job_dir: str
    log_file: str
    outcome_file: str
    env: dict[str, str]
    grace: float
    log_level: int = logging.INFO


def run_training(job: ChildJob, server: Connection) -> None:
    """Run one training and record its outcome; see the module docstring."""
    os.setsid()
    _redirect_output(job.log_file)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    faulthandler.enable()
    logging.basicConfig(level=job.log_level, format=LOG_FORMAT, stream=sys.stderr,
                        force=True)
    threading.Thread(target=_watch_server, args=(server, job.grace),
                     name="deepaas-server-watch", daemon=True).start()
    os.environ.update(job.env)
    os.environ["DEEPAAS_TRAINING_UUID"] = job.uuid
    os.environ["DEEPAAS_TRAINING_DIR"] = job.job_dir
    try:
        outcome = _train(job)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _write_outcome(job.outcome_file, outcome)
    finally:
        _stop_leftovers(job.grace)
        sys.stdout.flush()
        sys.stderr.flush()


def _redirect_output(log_file: str) -> None:
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _watch_server(server: Connection, grace: float) -> None:
    """Stop this training when the server that started it goes away."""
    try:
        server.recv()
    except (EOFError, OSError):
        pass
    print("deepaas: the server that started this training is gone; stopping",
          file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace)
    os.killpg(0, signal.SIGKILL)


def _train(job: ChildJob) -> dict[str, Any]:
    print(f"deepaas: training {job.uuid} of model {job.spec.name!r} started "
          f"(pid {os.getpid()})", flush=True)
    try:
        wrapper = load_wrapped(job.spec)
        kwargs = wrapper.parse_train_args(job.raw)
        result = wrapper.call("train", kwargs)
    except ModelError as exc:
        LOG.error("training failed: %s\n%s", exc.message, exc.traceback.rstrip())
        return {"status": "error", "message": exc.message}
    except DeepaasError as exc:
        LOG.error("training failed: %s", exc.message)
        return {"status": "error", "message": exc.message}
    try:
        output = json.loads(to_json_bytes(result))
    except (TypeError, ValueError) as exc:
        message = f"train() returned a value that is not JSON: {exc}"
        LOG.error("training failed: %s", message)
        return {"status": "error", "message": message}
    LOG.info("training finished")
    return {"status": "done", "output": output}


def _write_outcome(path: str, outcome: dict[str, Any]) -> None:
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(outcome, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def _stop_leftovers(grace: float) -> None:
    """Stop and reap the processes the model left behind.

    Reaping them here, as their parent, means none lingers as a zombie even
    where the system's init does not reap orphans.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.02)
