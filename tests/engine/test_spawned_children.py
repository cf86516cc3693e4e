"""A worker spawned by deepaas-run does not re-run the console script.

Python's spawn start method runs the parent's main module again in every
child; for deepaas-run that is the whole HTTP and option stack, a third of
a second per child that no worker uses (docs/benchmarks.md, "Start-up").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.servers import RunningServer

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
    server = RunningServer(
        "--model-name", "module-census", "--state-dir", str(tmp_path / "state"),
        env=subprocess_env(installed_models), log=tmp_path / "server.log",
        command=command,
    )  # fmt: skip
    try:
        server.wait_serving()
        _, _, answer = server.request(
            "POST", "/v2/models/module-census/predict/", data=b""
        )
        census = json.loads(answer)["predictions"]
    finally:
        try:
            assert server.terminate() == 0
        finally:
            server.close()
    assert census == {"deepaas.cmd.run": False, "aiohttp.web": False}
