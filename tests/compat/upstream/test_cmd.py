"""DEEPaaS 2.6.0's ``deepaas/tests/test_cmd.py``, ported to real processes.

2.6.0 mocks ``aiohttp.web.run_app`` and checks the host and port it was
given; here ``deepaas-run`` really starts and a client connects there.

Not ported (internals, not the wire):

- ``TestExecute.test_execute_data``, ``test_execute_url`` and
  ``test_execute_ct`` mock ``deepaas.cmd.execute.prediction`` (the model is
  never called), and two of them download files from the internet. The old
  single-file ``deepaas-predict`` they exercise is covered, with real
  models and files, by tests/cmd/test_predict_cli.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from tests.compat.upstream._http import Target
from tests.servers import RunningServer

pytestmark = pytest.mark.slow


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_run_custom_ip_port(server_for, plain_port):
    """``--listen-ip`` and ``--listen-port`` are where the API answers.

    The plain server of conftest.py is started with both options.
    """
    server = server_for("plain")
    assert server.url == f"http://127.0.0.1:{plain_port}"
    assert server.get("/v2/").status == 200


def test_run(upstream_env, tmp_path):
    """Without options, ``deepaas-run`` listens on 127.0.0.1:5000, as 2.6.0."""
    if _port_taken(5000):
        pytest.skip("127.0.0.1:5000 is in use by another program")
    # The bare command line: no --listen-port at all.
    with RunningServer(
        "--model-name", "deepaas-test", env=upstream_env, port=None,
        log=tmp_path / "stderr.log",
    ) as server:  # fmt: skip
        server.wait_serving()
        (line,) = [line for line in server.output if "serving" in line]
        assert "http://127.0.0.1:5000" in line, line
        assert Target("http://127.0.0.1:5000").get("/v2/").status == 200


def test_cli_takes_2x_general_options(upstream_env, tmp_path):
    """A 2.x ``deepaas-cli`` command line with 2.6.0's general options works.

    Not in 2.6.0's suite: found side by side. 2.6.0's ``deepaas-cli``
    registers every ``deepaas-run`` and oslo.log option, so scripts may pass
    them before the method; they change nothing of the answer.
    """
    log = tmp_path / "cli.log"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepaas.cmd.cli",
            "--debug",
            "--log-file",
            str(log),
            "--nowarm",
            "--workers",
            "2",
            "--nodebug-endpoint",
            "--model-name",
            "deepaas-test",
            "get_metadata",
        ],
        env=upstream_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip())["name"] == "deepaas-test"
