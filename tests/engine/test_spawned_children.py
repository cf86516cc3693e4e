"""A worker spawned by deepaas-run does not re-run the console script.

Python's spawn start method runs the parent's main module again in every
child; for deepaas-run that is the whole HTTP and option stack, a third of
a second per child that no worker uses (docs/benchmarks.md, "Start-up").
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "command",
    [[str(BIN / "deepaas-run")], [sys.executable, "-m", "deepaas.cmd.run"]],
    ids=["console-script", "python-m"],
)
def test_a_worker_imports_no_http_stack(
    installed_models: Path, tmp_path: Path, command: list[str]
) -> None:
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [*command, "--listen-port", "0", "--model-name", "module-census",
             "--state-dir", str(tmp_path / "state")],
            env=subprocess_env(installed_models), stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not (match := re.search(r"serving .* on (http://\S+)", log.read_text())):
            alive = server.poll() is None and time.monotonic() < deadline
            assert alive, log.read_text()
            time.sleep(0.05)
        request = urllib.request.Request(
            f"{match.group(1)}/v2/models/module-census/predict/", data=b"",
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            census = json.loads(answer.read())["predictions"]
    finally:
        server.terminate()
        assert server.wait(30) == 0
    assert census == {"deepaas.cmd.run": False, "aiohttp.web": False}
