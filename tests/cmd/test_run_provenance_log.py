"""``deepaas-run --provenance-log``: every answer recorded, none lost at a stop.

A real server: answers are recorded by a child process of the server, and
a Ctrl-C that reaches the whole process group (as in a terminal) still
leaves one line per answer once the server has stopped.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import subprocess_env
from tests.servers import RunningServer


def start_in_own_group(
    log: Path, installed_models: Path, stderr: Path
) -> tuple[RunningServer, str]:
    """deepaas-run in a process group of its own, so that a signal to the
    group reaches the server and its children, not this test; its URL."""
    server = RunningServer(
        "--model-name", "echo", "--provenance-log", str(log),
        env=subprocess_env(installed_models), log=stderr, start_new_session=True,
    )  # fmt: skip
    try:
        return server, server.wait_serving()
    except BaseException:
        os.killpg(server.pid, signal.SIGKILL)
        server.close()
        raise


def post(url: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as resp:
        return int(resp.status)


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_loses_no_record(
    installed_models: Path, tmp_path: Path
) -> None:
    log = tmp_path / "provenance.jsonl"
    server, url = start_in_own_group(log, installed_models, tmp_path / "err.log")
    try:
        for number in range(50):
            assert post(f"{url}/v2/models/echo/predict/", {"value": str(number)}) == 200
        # As a terminal's Ctrl-C: SIGINT to the server and to its children.
        os.killpg(server.pid, signal.SIGINT)
        assert server.wait(30) == 0
    finally:
        if server.process.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        server.close()
    server_line, *records = [json.loads(x) for x in log.read_text().splitlines()]
    assert "deepaas:model/echo" in server_line["entity"]
    assert len(records) == 50
    values = []
    for record in records:
        (arguments,) = [
            e for e in record["entity"].values()
            if e["prov:type"]["$"] == "deepaas:Arguments"
        ]  # fmt: skip
        values.append(json.loads(arguments["prov:value"])["value"])
    assert values == [str(n) for n in range(50)]
