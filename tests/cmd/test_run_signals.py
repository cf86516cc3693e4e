"""deepaas-run's options reach where they act: shutdown time, warm-up.

README's options table: ``--shutdown-timeout`` (seconds in-flight requests
get after SIGTERM/SIGINT) and ``--warm`` (call ``warm()`` in every worker).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.servers import RunningServer


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[RunningServer]]:
    started: list[RunningServer] = []
    yield started
    for server in started:
        server.close()


def wait_until_busy(server: RunningServer, model: str, timeout: float = 20) -> None:
    """Poll /health until a request of ``model`` is in a worker's hands."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body = server.get("/health")
        if body["models"][model]["busy"]:
            return
        time.sleep(0.01)
    raise AssertionError(f"no request of {model!r} in progress")


@pytest.mark.slow
def test_shutdown_timeout_cuts_a_request_short_and_warm_runs_by_default(
    servers: list[RunningServer], installed_models: Path, tmp_path: Path
) -> None:
    server = RunningServer(
        "--model-name",
        "gate",
        "--model-name",
        "warm-recorder",
        "--shutdown-timeout",
        "1",
        env=subprocess_env(installed_models),
        log=tmp_path / "stderr.log",
    )
    servers.append(server)
    server.wait_serving()
    status, body = server.post("/v2/models/warm-recorder/predict/", {})
    assert status == 200 and body["predictions"]["warmed"] is True

    gate = tmp_path / "open"
    ended: list[float] = []

    def held_request() -> None:
        try:
            server.post("/v2/models/gate/predict/", {"gate": str(gate)})
        except (OSError, ValueError):  # the connection is dropped: expected
            pass
        ended.append(time.monotonic())

    client = threading.Thread(target=held_request, daemon=True)
    client.start()
    wait_until_busy(server, "gate")
    stopped = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    client.join(8)  # the default (30 s) would still hold it
    gate.touch()  # let the worker go, whatever happened
    assert ended, "the request in progress outlived --shutdown-timeout 1"
    assert 0.8 < ended[0] - stopped < 8
    assert server.process.wait(30) == 0


@pytest.mark.slow
def test_warm_false_reaches_every_worker(
    servers: list[RunningServer], installed_models: Path, tmp_path: Path
) -> None:
    warmed = tmp_path / "warmed.txt"
    server = RunningServer(
        "--model-name",
        "warm-recorder",
        "--workers",
        "2",
        "--warm",
        "false",
        env=subprocess_env(installed_models, DEEPAAS_TEST_WARM_FILE=str(warmed)),
        log=tmp_path / "stderr.log",
    )
    servers.append(server)
    server.wait_serving()
    answers = {}
    deadline = time.monotonic() + 20
    while len(answers) < 2 and time.monotonic() < deadline:
        status, body = server.post("/v2/models/warm-recorder/predict/", {})
        assert status == 200
        answers[body["predictions"]["pid"]] = body["predictions"]["warmed"]
    assert len(answers) == 2  # both workers answered
    assert list(answers.values()) == [False, False]
    assert not warmed.exists()  # warm() ran in no process at all
    assert server.terminate(signal.SIGTERM) == 0



#: A process that leaves deepaas-run's serving with one thread still busy
#: for a moment, named as argv[1] says, then exits as deepaas-run does.
_EXIT_WITH_A_BUSY_THREAD = """
import sys, threading, time
from deepaas.cmd.run import _leave_hung_threads
busy = threading.Thread(target=time.sleep, args=(0.5,), name=sys.argv[1])
busy.start()
_leave_hung_threads(0)
print("waited for", sys.argv[1], flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("thread", "waited"),
    [("deepaas-store_0", True), ("deepaas-model-echo_0", False)],
)
def test_at_exit_only_a_model_call_is_left_behind(thread: str, waited: bool) -> None:
    # The stores' threads finish their last write (bounded by SQLite's busy
    # timeout); a model call still running in a thread cannot be stopped,
    # so the server exits without it, saying so.
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_WITH_A_BUSY_THREAD, thread],
        capture_output=True, text=True, timeout=60, env=subprocess_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ("waited for" in done.stdout) is waited, done.stdout + done.stderr
    assert ("exiting without waiting" in done.stderr) is not waited, done.stderr
