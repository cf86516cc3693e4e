"""deepaas-run as a user starts it: a real process on a free loopback port."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.processes import pid_running
from tests.servers import RunningServer


def children(pid: int) -> set[int]:
    """Live (non-zombie) processes whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deepaas.cmd.run", "--listen-port", "0", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.slow
def test_fresh_install_serves_the_demo_and_stops_on_sigterm(start_server, tmp_path):
    server = start_server(env=subprocess_env(DEEPAAS_DEMO_DIR=str(tmp_path / "demo")))
    server.wait_serving()
    assert server.models == "deepaas-demo"
    printed = "".join(server.output)
    assert f"{server.url}/v2/" in printed
    assert f"{server.url}/swagger.json" in printed
    assert f"{server.url}/api" in printed

    assert server.get("/v2/models/")[1]["models"][0]["name"] == "deepaas-demo"
    status, body = server.post("/v2/models/deepaas-demo/predict/",
                               {"sample": [5.0, 3.4, 1.5, 0.2]})
    assert status == 200
    assert body["predictions"][0]["label"] == "setosa"
    # Neither input: the client's mistake (422), also from a worker process.
    status, body = server.post("/v2/models/deepaas-demo/predict/", {})
    assert status == 422
    assert "either a CSV file" in body["_schema"][0]

    workers = children(server.process.pid)
    assert workers  # the worker process (and multiprocessing's helper)
    assert server.terminate(signal.SIGTERM) == 0
    deadline = time.monotonic() + 10
    while any(pid_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(pid_running(pid) for pid in workers)
    assert "stopped" in server.stderr()


@pytest.mark.slow
def test_sigint_stops_two_workers_cleanly(start_server, installed_models):
    server = start_server("--model-name", "crashing", "--workers", "2",
                          env=subprocess_env(installed_models))
    server.wait_serving()
    pids = {server.post("/v2/models/crashing/predict/", {})[1]["predictions"]["pid"]
            for _ in range(4)}
    assert pids <= children(server.process.pid)
    assert server.terminate(signal.SIGINT) == 0
    deadline = time.monotonic() + 10
    while any(pid_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(pid_running(pid) for pid in pids)


@pytest.mark.slow
def test_sigterm_lets_a_request_in_progress_finish(start_server, installed_models):
    server = start_server("--model-name", "crashing",
                          env=subprocess_env(installed_models))
    server.wait_serving()
    answers = []
    slow = threading.Thread(target=lambda: answers.append(server.post(
        "/v2/models/crashing/predict/", {"how": "sleep", "seconds": 1.5})))
    slow.start()
    deadline = time.monotonic() + 20  # until the request is in the worker
    while not server.get("/health")[1]["models"]["crashing"]["busy"]:
        assert time.monotonic() < deadline, "the request never started"
        time.sleep(0.01)
    assert server.terminate(signal.SIGTERM) == 0
    slow.join(10)
    assert answers and answers[0][0] == 200


@pytest.mark.slow
def test_serves_several_named_models_and_the_options(start_server, installed_models):
    server = start_server("--model-name", "echo", "--model-name", "new-style",
                          "--workers", "0", "--predict-endpoint", "false",
                          "--base-path", "/deepaas", "--debug-endpoint",
                          env=subprocess_env(installed_models))
    server.wait_serving()
    assert f"{server.url}/deepaas/v2/" in "".join(server.output)
    status, body = server.get("/deepaas/v2/models/")
    assert [m["name"] for m in body["models"]] == ["echo", "new-style"]
    status, body = server.post("/deepaas/v2/models/echo/predict/", {})
    assert status == 402
    with urllib.request.urlopen(server.url + "/deepaas/debug/", timeout=10) as resp:
        assert resp.status == 200
        assert "loading and warming echo, new-style" in resp.read().decode()
    assert server.terminate() == 0


@pytest.mark.slow
def test_unknown_model_is_a_one_line_error(installed_models):
    result = run("--model-name", "nope", env=subprocess_env(installed_models))
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines()
              if line.startswith("deepaas-run: error:")]
    assert len(errors) == 1
    assert "'nope' is not installed" in errors[0]
    assert "echo" in errors[0]  # lists what is installed
    assert "Traceback" not in result.stderr
    assert "serving" not in result.stdout


@pytest.mark.slow
def test_broken_model_by_name_says_why(installed_models):
    result = run("--model-name", "broken", "--workers", "0",
                 env=subprocess_env(installed_models))
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("deepaas-run: error:")
    assert "this_module_does_not_exist" in last
    assert "Traceback" in result.stderr  # logged with its traceback


@pytest.mark.slow
def test_environment_variable_chooses_the_model(start_server, installed_models):
    server = start_server("--workers", "0",
                          env=subprocess_env(installed_models, DEEPAAS_V2_MODEL="echo"))
    server.wait_serving()
    assert server.models == "echo"
    assert server.post("/v2/models/echo/predict/", {"value": "env"}) == (
        200, {"status": "OK", "predictions": "env"})
    assert server.terminate() == 0


@pytest.mark.slow
def test_bad_option_is_a_usage_error():
    result = run("--workers", "lots", env=subprocess_env())
    assert result.returncode != 0
    assert "--workers" in result.stderr and "lots" in result.stderr


@pytest.mark.slow
def test_help_lists_the_options():
    result = subprocess.run([sys.executable, "-m", "deepaas.cmd.run", "--help"],
                            env=subprocess_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    for option in ("--listen-ip", "--listen-port", "--model-name", "--workers",
                   "--client-max-size", "--base-path", "--config-file"):
        assert option in result.stdout


def test_main_is_callable_directly(capsys):
    from deepaas.cmd.run import main

    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        assert main(["--model-name", "nope", "--listen-port", "0"]) == 1
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
    assert "deepaas-run: error: model 'nope'" in capsys.readouterr().err


def debug_text(server: RunningServer, *needles: str) -> str:
    """/debug/ once it shows every needle (output arrives through a pipe)."""
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(server.url + "/debug/", timeout=10) as resp:
            assert resp.status == 200
            text = resp.read().decode()
        if all(n in text for n in needles) or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "1"])
def test_debug_endpoint_shows_what_the_model_prints_and_logs(
    start_server, installed_models, workers
):
    server = start_server("--model-name", "chatty", "--workers", workers,
                          "--debug-endpoint", env=subprocess_env(installed_models))
    server.wait_serving()
    assert server.post("/v2/models/chatty/predict/", {})[0] == 200
    needles = ("[stdout] chatty: printed to stdout",
               "[stderr] chatty: printed to stderr", "chatty: logged a warning")
    text = debug_text(server, *needles)
    for needle in needles:
        assert needle in text
    assert "deepaas: serving chatty" in text
    # What is captured still reaches the terminal.
    assert "chatty: printed to stderr" in server.stderr()
    assert server.terminate() == 0


@pytest.mark.slow
def test_debug_endpoint_shows_the_log_written_to_a_file(
    start_server, installed_models, tmp_path
):
    log_file = tmp_path / "deepaas.log"
    server = start_server("--model-name", "chatty", "--workers", "0",
                          "--debug-endpoint", "--log-file", str(log_file),
                          env=subprocess_env(installed_models))
    server.wait_serving()
    server.post("/v2/models/chatty/predict/", {})
    text = debug_text(server, "[log]", "chatty: logged a warning")
    assert "[log]" in text and "chatty: logged a warning" in text
    assert server.terminate() == 0
    assert "chatty: logged a warning" in log_file.read_text()


@pytest.mark.slow
def test_debug_endpoint_off_is_204(start_server, installed_models):
    server = start_server("--model-name", "echo", "--workers", "0",
                          env=subprocess_env(installed_models))
    server.wait_serving()
    with urllib.request.urlopen(server.url + "/debug/", timeout=10) as resp:
        assert resp.status == 204
    assert server.terminate() == 0
