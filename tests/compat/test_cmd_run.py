"""deepaas-run takes DEEPaaS 2.x's command lines and config files.

Real ``deepaas-run`` processes on loopback, with fake models registered as
installed entry points (issue 9 items 6 and 10, issue 10 items 6, 8, 9).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from deepaas.config import build_config
from tests.conftest import FAKE_MODELS, subprocess_env, write_distribution
from tests.servers import RunningServer

#: A model whose import leaves a mark: it shows whether deepaas-run got that far.
MARKER_MODEL = '''
import os
from pathlib import Path

Path(os.environ["DEEPAAS_TEST_MARKER"]).write_text("imported")


def predict(**kwargs):
    return {"ok": True}
'''


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site where two models (and the built-in demo) are installed."""
    site = tmp_path_factory.mktemp("two-models")
    return write_distribution(
        site, {"echo": FAKE_MODELS["echo"], "trainer": FAKE_MODELS["trainer"]}
    )


@pytest.fixture(scope="module")
def all_served(two_models: Path, tmp_path_factory: pytest.TempPathFactory):
    """deepaas-run with no model name and the defaults of every option."""
    logs = tmp_path_factory.mktemp("all-served")
    env = subprocess_env(two_models, XDG_STATE_HOME=str(logs / "state"))
    server = RunningServer("--workers", "0", "--train-cancel-grace", "1", env=env,
                           log=logs / "stderr.log")
    try:
        server.wait_serving()
        yield server
    finally:
        server.close()


def _post(url: str) -> dict:
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def _delete(url: str) -> dict:
    request = urllib.request.Request(url, method="DELETE")
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_several_installed_models_are_all_served_with_a_warning(all_served):
    assert all_served.models == "echo, trainer"
    status, body = all_served.get("/v2/models/")
    assert status == 200
    assert sorted(m["name"] for m in body["models"]) == ["echo", "trainer"]
    warning = all_served.stderr()
    assert "WARNING" in warning and "serving all of them (echo, trainer)" in warning
    assert all_served.post("/v2/models/echo/predict/", {"value": "x"}) == (
        200, {"status": "OK", "predictions": "x"})


@pytest.mark.slow
def test_a_broken_model_never_hides_the_others_served_without_a_name(
    tmp_path: Path,
):
    site = write_distribution(
        tmp_path, {"echo": FAKE_MODELS["echo"], "broken": FAKE_MODELS["broken"]}
    )
    server = RunningServer("--workers", "0", env=subprocess_env(site),
                           log=tmp_path / "stderr.log")
    try:
        server.wait_serving()
        assert server.models == "echo"
        assert "model 'broken' is not served" in server.stderr()
        assert "this_module_does_not_exist" in server.stderr()
        assert server.terminate() == 0
    finally:
        server.close()


@pytest.mark.slow
def test_every_training_runs_at_once_by_default(all_served):
    train = all_served.url + "/v2/models/trainer/train/"
    started = [_post(f"{train}?seconds=60") for _ in range(3)]
    try:
        assert [t["status"] for t in started] == ["running"] * 3
        for training in started:
            path = f"/v2/models/trainer/train/{training['uuid']}"
            status, body = all_served.get(path)
            assert (status, body["status"]) == (200, "running")
    finally:
        for training in started:
            _delete(train + training["uuid"])


@pytest.mark.slow
def test_a_training_limit_queues_the_others(two_models: Path, tmp_path: Path):
    env = subprocess_env(two_models, XDG_STATE_HOME=str(tmp_path / "state"))
    server = RunningServer("--model-name", "trainer", "--workers", "0",
                           "--max-concurrent-trainings", "1",
                           "--train-cancel-grace", "1",
                           env=env, log=tmp_path / "stderr.log")
    try:
        server.wait_serving()
        train = server.url + "/v2/models/trainer/train/"
        started = [_post(f"{train}?seconds=60") for _ in range(2)]
        assert [t["status"] for t in started] == ["running", "queued"]
        for training in reversed(started):
            _delete(train + training["uuid"])
        assert server.terminate() == 0
    finally:
        server.close()


@pytest.mark.slow
def test_the_command_line_model_name_replaces_the_config_file_one(
    two_models: Path, tmp_path: Path
):
    config = tmp_path / "deepaas.conf"
    config.write_text("[DEFAULT]\nmodel_name = trainer\n")
    server = RunningServer("--config-file", str(config), "--model-name", "echo",
                           "--workers", "0", env=subprocess_env(two_models),
                           log=tmp_path / "stderr.log")
    try:
        server.wait_serving()
        assert server.models == "echo"
        status, body = server.get("/v2/models/")
        assert [m["name"] for m in body["models"]] == ["echo"]
        assert server.terminate() == 0
    finally:
        server.close()


@pytest.mark.slow
def test_a_port_in_use_is_reported_before_the_model_is_imported(tmp_path: Path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "marker_model.py").write_text(MARKER_MODEL)
    write_distribution(site, {"marker": "marker_model"})
    marker = tmp_path / "imported"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        began = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "deepaas.cmd.run", "--model-name", "marker",
             "--listen-port", str(port)],
            env=subprocess_env(site, DEEPAAS_TEST_MARKER=str(marker)),
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 1
    [error] = [line for line in result.stderr.splitlines()
               if line.startswith("deepaas-run: error:")]
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in error
    assert "--listen-port 0" in error
    assert not marker.exists(), "the model was imported before the port was checked"
    assert "Traceback" not in result.stderr
    assert time.monotonic() - began < 30


@pytest.mark.slow
def test_help_groups_the_options_and_shows_their_defaults():
    result = subprocess.run(
        [sys.executable, "-m", "deepaas.cmd.run", "--help"],
        env=subprocess_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0
    text = result.stdout
    headings = [line[:-1] for line in text.splitlines()
                if line.endswith(":") and not line.startswith(" ")]
    assert headings[:5] == ["general", "server", "logging", "trainings", "execution"]
    flat = " ".join(text.split())
    assert "--listen-port PORT TCP port the API listens on. (default: 5000)" in flat
    assert "--warm, --no-warm" in flat and "(default: on)" in flat
    assert "--max-concurrent-trainings N" in flat and "(default: 0)" in flat
    assert "--use-json, --no-use-json" in flat


@pytest.mark.parametrize("spelling", ["--no-warm", "--nowarm", "--warm=false"])
def test_every_boolean_spelling_is_accepted(spelling: str):
    conf = build_config([spelling, "--no-train-endpoint"])
    assert conf.warm is False and conf.train_endpoint is False
