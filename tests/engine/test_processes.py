"""The one bootstrap every child process starts with, on real processes.

A child is spawned with a prologue (its environment, its signals), says
how its start went (``ready`` with a payload, or ``failed`` with why, in
one line), and, once it ends, the parent says how in words: the same path
the serving workers, the batch workers, the probe and the trainings take.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
from typing import Any

import pytest

from deepaas.engine.processes import (
    FAILED,
    READY,
    Prologue,
    describe_exit,
    ready_payload,
    report_ready,
    spawn_child,
    start_child,
    start_failure,
)
from deepaas.engine.processes.wire import BlockingChannel, start_error
from deepaas.exceptions import ModelLoadError

pytestmark = pytest.mark.slow


# -- what the children run (imported by name in the spawned interpreter) ----


def _serve(sock: socket.socket, start: str) -> None:
    """Start as ``start`` says, report it, then answer pings until stopped."""
    channel = BlockingChannel(sock)
    starts = {
        "environment": lambda: {"mark": os.environ["DEEPAAS_TEST_MARK"]},
        "missing-module": lambda: importlib.import_module("deepaas_no_such_module"),
    }
    payload = start_child(channel.send, "demo", starts[start])
    if payload is None:
        return
    report_ready(channel.send, payload)
    while True:
        try:
            message = channel.recv()
        except EOFError:
            return
        if message == "stop":
            return
        channel.send("pong")


# -- the parent's side -------------------------------------------------------


def _spawn(start: str, prologue: Prologue) -> tuple[Any, BlockingChannel]:
    parent, child = socket.socketpair()
    process = spawn_child(
        _serve,
        (child, start),
        name=f"deepaas-test-{start}",
        prologue=prologue,
        child_ends=(child,),
    )
    parent.settimeout(60)
    return process, BlockingChannel(parent)


def _stop(process: Any) -> None:
    process.join(10)
    if process.is_alive():
        process.kill()
        process.join()


def test_a_child_that_starts_delivers_its_payload() -> None:
    process, channel = _spawn(
        "environment", Prologue(env={"DEEPAAS_TEST_MARK": "from the parent"})
    )
    try:
        message = channel.recv()
        assert message[0] == READY
        assert message[2] == process.pid
        # The prologue set the environment before the start ran.
        assert ready_payload(message) == {"mark": "from the parent"}
        channel.send("stop")
        process.join(10)
    finally:
        _stop(process)
    assert process.exitcode == 0
    assert describe_exit(process.exitcode) == "it exited with code 0"


def test_a_child_whose_import_fails_says_why_in_one_line() -> None:
    process, channel = _spawn("missing-module", Prologue())
    try:
        message = channel.recv()
        process.join(10)
    finally:
        _stop(process)
    assert message[0] == FAILED
    error, trace = start_failure(message)
    assert error.message == (
        "model 'demo' could not start: ModuleNotFoundError: "
        "No module named 'deepaas_no_such_module'"
    )
    assert "Traceback" in trace  # for the parent's log, not the user's line
    with pytest.raises(ModelLoadError, match="^model 'demo' could not start: .*$"):
        ready_payload(message)
    assert process.exitcode == 0  # it reported, then ended on its own


def test_a_child_whose_prologue_fails_is_described_in_one_line() -> None:
    # An environment value that is not a string: os.environ refuses it, in
    # the prologue, before the child can report anything.
    bad = Prologue(env={"DEEPAAS_TEST_MARK": 1})  # type: ignore[dict-item]
    process, channel = _spawn("environment", bad)
    try:
        with pytest.raises(EOFError):
            channel.recv()
        process.join(10)
    finally:
        _stop(process)
    assert describe_exit(process.exitcode) == "it exited with code 1"


def test_a_child_killed_by_a_signal_is_described_by_name() -> None:
    process, channel = _spawn("environment", Prologue(env={"DEEPAAS_TEST_MARK": "x"}))
    try:
        assert channel.recv()[0] == READY
        # The prologue disregards SIGINT: the parent decides when it stops.
        os.kill(process.pid, signal.SIGINT)
        channel.send("ping")
        assert channel.recv() == "pong"
        os.kill(process.pid, signal.SIGKILL)
        with pytest.raises(EOFError):
            channel.recv()
        process.join(10)
    finally:
        _stop(process)
    assert describe_exit(process.exitcode) == (
        "it was killed by SIGKILL (often: killed for using too much memory)"
    )


@pytest.mark.parametrize(
    ("exitcode", "said"),
    [
        (None, "it closed its connection and stopped answering"),
        (3, "it exited with code 3"),
        (-signal.SIGTERM, "it was killed by SIGTERM"),
        (
            -signal.SIGSEGV,
            "it was killed by SIGSEGV (a segmentation fault in native code)",
        ),
        (-200, "it was killed by signal 200"),
    ],
)
def test_every_end_is_said_in_one_line(exitcode: int | None, said: str) -> None:
    assert describe_exit(exitcode) == said


def test_a_batch_worker_failure_leaves_the_model_to_its_pool() -> None:
    # The batch pool names the model itself: its children send only why.
    wire, _ = start_error("demo", TypeError("bad"), named=False)
    assert wire == ("ModelLoadError", "TypeError: bad", {})
    wire, _ = start_error("demo", TypeError("bad"))
    assert wire == (
        "ModelLoadError",
        "model 'demo' could not start: TypeError: bad",
        {},
    )
