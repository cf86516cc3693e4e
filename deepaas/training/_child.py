"""The body of a training process: its own session, its own log, one train().

The server starts this with the ``spawn`` method.  Before anything else the
process starts a session (so that cancelling it can signal every process the
model starts), points file descriptors 1 and 2 at a pipe that the server
copies into the training's log (so that output of C code and of child
processes lands there too, under the log's cap) and sets its environment
(e.g. ``CUDA_VISIBLE_DEVICES``) before the model is imported.

SIGTERM raises ``SystemExit`` in the model's code, so its ``finally`` blocks
run; the server kills what is left after the grace period.  A thread watches
a pipe from the server: when the server dies, the training stops itself
rather than run on unobserved, and copies its own output into the log from
then on (it holds the reading end of the output pipe for that, which also
spares the model a broken pipe).  The outcome is written to
``outcome.json`` atomically; the server reads it once the process has
exited.
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
from pathlib import Path
from typing import Any

from deepaas.engine.processes import spawn_child
from deepaas.exceptions import DeepaasError, GpuContextLost, ModelError
from deepaas.model.gpu_faults import TRAINING_ENDS, restated
from deepaas.model.loading import ModelSpec
from deepaas.model.wrapper import RawArguments, load_wrapped, to_json_bytes
from deepaas.training._jobdir import OUTCOME_UNWRITTEN
from deepaas.training._logwriter import DRAIN_SECONDS, LogPump, LogWriter
from deepaas.training.store import write_private

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
    max_log_bytes: int = 0


def run_training(
    job: ChildJob, server: Connection, output: Connection, output_reader: Connection
) -> None:
    """Run one training and record its outcome; see the module docstring.

    ``output`` is the writing end of the pipe the server copies into the log;
    ``output_reader`` its reading end, used only once the server is gone.
    """
    os.setsid()
    _redirect_output(output)
    os.set_inheritable(output_reader.fileno(), False)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    faulthandler.enable()
    logging.basicConfig(
        level=job.log_level, format=LOG_FORMAT, stream=sys.stderr, force=True
    )
    orphan_pump: list[LogPump] = []
    threading.Thread(
        target=_watch_server,
        args=(server, job, output_reader, orphan_pump),
        name="deepaas-server-watch",
        daemon=True,
    ).start()
    os.environ.update(job.env)
    os.environ["DEEPAAS_TRAINING_UUID"] = job.uuid
    os.environ["DEEPAAS_TRAINING_DIR"] = job.job_dir
    try:
        outcome = _train(job)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            _write_outcome(job.outcome_file, outcome)
        except OSError as exc:
            print(f"deepaas: the outcome could not be written: {exc}",
                  file=sys.stderr, flush=True)
            raise SystemExit(OUTCOME_UNWRITTEN) from None
    finally:
        _stop_leftovers(job.grace)
        sys.stdout.flush()
        sys.stderr.flush()
        if orphan_pump:
            # No server copies the output any more: close this process's
            # ends of the pipe and let the pump copy what is left.
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            os.close(null)
            orphan_pump[0].finish(DRAIN_SECONDS)


def start_process(context: Any, job: ChildJob) -> tuple[Any, Connection, int]:
    """Start the training process of ``job`` (blocking: call it in a thread).

    Answers the process, the writing end of the pipe it watches (it sees
    end of file when this server dies, however it dies, and then stops) and
    the reading end of its output, for the server to copy into the log.
    """
    watch_end, alive_end = context.Pipe(duplex=False)
    output_reader, output = context.Pipe(duplex=False)
    try:
        # No prologue: a training sets itself up (run_training).  Not a
        # daemon: it stops itself when this server goes away, after its
        # grace period, rather than be killed at once.
        process = spawn_child(
            run_training,
            (job, watch_end, output, output_reader),
            name=f"deepaas-training-{job.uuid[:8]}",
            prologue=None,
            child_ends=(watch_end, output),
            daemon=False,
            context=context,
        )
    except BaseException:
        alive_end.close()
        output_reader.close()
        raise
    fd = os.dup(output_reader.fileno())
    output_reader.close()
    return process, alive_end, fd


def _redirect_output(output: Connection) -> None:
    os.dup2(output.fileno(), 1)
    os.dup2(output.fileno(), 2)
    output.close()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _watch_server(
    server: Connection,
    job: ChildJob,
    output_reader: Connection,
    orphan_pump: list[LogPump],
) -> None:
    """Stop this training when the server that started it goes away."""
    try:
        server.recv()
    except (EOFError, OSError):
        pass
    fd = os.dup(output_reader.fileno())
    output_reader.close()
    pump = LogPump(
        fd, LogWriter(Path(job.log_file), job.max_log_bytes), name="deepaas-log-pump"
    )
    pump.start()
    orphan_pump.append(pump)
    print(
        "deepaas: the server that started this training is gone; stopping",
        file=sys.stderr,
        flush=True,
    )
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(job.grace)
    os.killpg(0, signal.SIGKILL)


def _train(job: ChildJob) -> dict[str, Any]:
    print(
        f"deepaas: training {job.uuid} of model {job.spec.name!r} started "
        f"(pid {os.getpid()})",
        flush=True,
    )
    try:
        wrapper = load_wrapped(job.spec)
        kwargs = wrapper.parse_train_args(job.raw)
        result = wrapper.call("train", kwargs)
    except ModelError as exc:
        message = exc.message
        if isinstance(exc, GpuContextLost):  # this process ends anyway
            message = restated(message, TRAINING_ENDS)
        LOG.error("training failed: %s\n%s", message, exc.traceback.rstrip())
        return {"status": "error", "message": message}
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
    write_private(Path(path), json.dumps(outcome).encode(), sync=True)


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
