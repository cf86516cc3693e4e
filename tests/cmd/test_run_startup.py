"""deepaas-run while its models warm: the probes answer, nothing is refused.

A real ``deepaas-run`` serving a model whose ``warm()`` takes 2 s, asked
for /health, /ready and a prediction in a loop from the moment its port
accepts connections until the first prediction succeeds (docs/deploying.md,
"Start-up").
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.servers import RunningServer, free_port

WARM_SECONDS = 2.0


def ask(url: str, body: dict | None = None) -> tuple[int, dict]:
    """Status and JSON body; ConnectionRefusedError propagates."""
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def slow_warm_server(
    start_server: Callable[..., RunningServer], installed_models: Path
) -> RunningServer:
    env = subprocess_env(installed_models, DEEPAAS_TEST_WARM_SECONDS=str(WARM_SECONDS))
    return start_server("--model-name", "slow-warm", port=free_port(), env=env)


@pytest.mark.slow
def test_probes_answer_and_a_prediction_waits_while_the_model_warms(
    slow_warm_server, tmp_path: Path
):
    server = slow_warm_server
    base = f"http://127.0.0.1:{server.port}"
    deadline = server.launched + 60
    server.wait_accepting(timeout=60)
    bound = time.monotonic()

    predicted: list[tuple[int, dict] | BaseException] = []

    def predict() -> None:
        try:
            predicted.append(ask(base + "/v2/models/slow-warm/predict/", {}))
        except BaseException as exc:  # reported by the assertions below
            predicted.append(exc)

    # Once bound, nothing is refused: a refused connection raises in ask().
    asked = threading.Thread(target=predict, daemon=True)
    asked.start()
    health: list[tuple[float, int, dict]] = []
    ready: list[tuple[int, str]] = []
    while asked.is_alive():
        assert time.monotonic() < deadline, (health, ready)
        status, body = ask(base + "/health")
        health.append((time.monotonic() - bound, status, body))
        status, body = ask(base + "/ready")
        ready.append((status, body["status"]))
        time.sleep(0.05)
    asked.join()

    assert all(status == 200 for _, status, _ in health), health
    # /health answered while the model was still warming, soon after the bind.
    seconds, _, body = health[0]
    assert body["startup"] == "starting: warming slow-warm", health
    assert seconds < WARM_SECONDS, health
    # /ready said what start-up does (503), and nothing else but 200.
    assert ready[0] == (503, "starting: warming slow-warm"), ready
    assert {status for status, _ in ready} <= {200, 503}, ready
    # The prediction asked while warming waited for the worker: answered 200.
    status, body = predicted[0]  # type: ignore[misc]
    assert status == 200, body
    assert body["predictions"]["pid"] > 0
    status, body = ask(base + "/ready")
    assert (status, body["status"]) == (200, "ready")
    assert server.terminate() == 0
