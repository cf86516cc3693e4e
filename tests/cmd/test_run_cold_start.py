"""A cold start as a client sees it: from the moment the port accepts.

A real ``deepaas-run`` serving a model whose import takes 2 s (as one that
imports a large framework does), asked for everything a client or an
orchestrator asks, in a loop, from the moment its port accepts until a
prediction has succeeded.  Nothing may be refused, nothing may answer a
5xx but ``/ready``'s 503, and the model is imported once per worker: on a
machine without GPUs the first worker also describes it (docs/engine.md,
"Start-up").
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cmd.test_run_startup import ask
from tests.conftest import subprocess_env
from tests.servers import RunningServer, free_port

IMPORT_SECONDS = 2.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("nvidia-smi") is not None,
        reason="with GPUs to assign, a probe describes the model first",
    ),
]


def start(
    start_server: Callable[..., RunningServer],
    installed_models: Path,
    tmp_path: Path,
    *options: str,
) -> RunningServer:
    env = subprocess_env(
        installed_models,
        DEEPAAS_TEST_IMPORT_SECONDS=str(IMPORT_SECONDS),
        DEEPAAS_TEST_IMPORT_LOG=str(tmp_path / "imports.log"),
    )
    return start_server(
        "--state-dir", str(tmp_path / "state"), *options,
        env=env, port=free_port(), log=tmp_path / "stderr.log",
    )  # fmt: skip


def test_nothing_is_refused_from_the_bind_to_the_first_prediction(
    start_server: Callable[..., RunningServer], installed_models: Path, tmp_path: Path
) -> None:
    server = start(
        start_server, installed_models, tmp_path,
        "--model-name", "slow-import", "--workers", "2",
    )  # fmt: skip
    base = f"http://127.0.0.1:{server.port}"
    try:
        deadline = server.launched + 60
        server.wait_accepting(timeout=60, interval=0.01)
        bound = time.monotonic()
        answers: dict[str, list[tuple[float, int]]] = {}
        predicted = threading.Event()
        failures: list[BaseException] = []

        def keep_asking(path: str, body: dict | None = None) -> None:
            seen = answers.setdefault(path, [])
            try:
                while not predicted.is_set() and time.monotonic() < deadline:
                    status, _ = ask(base + path, body)
                    seen.append((time.monotonic() - bound, status))
                    if body is not None and status == 200:
                        predicted.set()
                    time.sleep(0.02)
            except BaseException as exc:  # a refused connection, above all
                failures.append(exc)
                predicted.set()

        askers = [
            threading.Thread(target=keep_asking, args=(path,), daemon=True)
            for path in ("/health", "/ready", "/v2/models/", "/openapi.json")
        ]
        askers.append(threading.Thread(
            target=keep_asking,
            args=("/v2/models/slow-import/predict/", {"value": "v"}),
            daemon=True,
        ))
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join(70)
        assert not failures, failures
        assert predicted.is_set()
        # /health answered at once, well before the model was even imported.
        first_health, status = answers["/health"][0]
        assert status == 200 and first_health < IMPORT_SECONDS / 2, answers["/health"]
        assert {s for _, s in answers["/health"]} == {200}
        # /ready: 503 while starting, then 200; nothing else.
        assert answers["/ready"][0][1] == 503
        assert {s for _, s in answers["/ready"]} <= {200, 503}
        # The routes that need the model waited for it: never a 5xx.
        for path in ("/v2/models/", "/openapi.json", "/v2/models/slow-import/predict/"):
            assert {s for _, s in answers[path]} <= {200}, (path, answers[path])
        assert server.terminate() == 0
    finally:
        server.close()
    # Imported once per worker, never in the server, and never by a probe
    # before them.
    importers = (tmp_path / "imports.log").read_text().split()
    assert len(importers) == 2, importers
    assert str(server.pid) not in importers


def test_a_model_that_prefers_a_gpu_runs_its_workers_on_the_cpu(
    start_server: Callable[..., RunningServer], installed_models: Path, tmp_path: Path
) -> None:
    server = start(
        start_server, installed_models, tmp_path, "--model-name", "prefers-gpu"
    )
    url = f"http://127.0.0.1:{server.port}/v2/models/prefers-gpu/predict/"
    try:
        server.wait_accepting(timeout=60, interval=0.05)
        status, body = ask(url, {})
        assert status == 200, body
        # The placement, learnt from the worker itself, reached it before warm.
        assert body["predictions"]["device"] == "cpu"
        assert body["predictions"]["cuda_visible_devices"] == ""
        assert server.terminate() == 0
    finally:
        server.close()
    log = (tmp_path / "stderr.log").read_text()
    assert "it prefers a GPU, so it runs on the CPU" in log


def test_a_model_that_needs_a_gpu_stops_the_server_with_one_line(
    start_server: Callable[..., RunningServer], installed_models: Path, tmp_path: Path
) -> None:
    server = start(
        start_server, installed_models, tmp_path, "--model-name", "needs-gpu"
    )
    try:
        assert server.wait(60) == 1
    finally:
        server.close()
    log = (tmp_path / "stderr.log").read_text()
    assert "Traceback" not in log, log
    assert "asks for 1 GPU(s) per worker, but 0 GPU(s) may be used" in log, log
