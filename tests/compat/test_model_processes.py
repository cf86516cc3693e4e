"""A model's predict may start processes, and they all die with their worker.

DEEPaaS 2.x models use ``multiprocessing.Pool``, ``ProcessPoolExecutor`` or
a torch ``DataLoader(num_workers>0)`` inside ``predict``.  deepaas's workers
allow it, and still guarantee that a worker, and every process it started,
ends with the server (even one killed with SIGKILL) and with the worker
(when it is killed on a timeout).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import MakeClient
from tests.conftest import subprocess_env
from tests.processes import pid_running, wait_for
from tests.servers import RunningServer

pytestmark = pytest.mark.slow

PREDICT = "/v2/models/compat-spawner/predict/"


def guards_of(worker: int) -> list[int]:
    """The guard process a worker forks when it starts (docs/engine.md)."""
    guards = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if name == "deepaas-guard" and ppid == worker:
            guards.append(int(entry))
    return guards


def started_pids(pids_file: Path) -> dict[str, Any]:
    """What the model's ``leave`` call started, once it has written it down."""
    wait_for(pids_file.exists, "the model to write its pids")
    pids: dict[str, Any] = json.loads(pids_file.read_text())
    return pids


def all_gone(pids: list[int]) -> bool:
    return not any(pid_running(pid) for pid in pids)


def kill_leftovers(pids: list[int]) -> None:
    """Where a test failed, leave no process of it behind."""
    for pid in pids:
        if pid_running(pid):
            os.kill(pid, signal.SIGKILL)


async def test_predict_may_start_a_pool_and_an_executor(
    make_client: MakeClient,
) -> None:
    client = await make_client("compat-spawner", workers=1)
    for how in ("pool", "executor"):
        resp = await client.post(PREDICT, params={"how": how})
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["predictions"] == {"squares": [0, 1, 4, 9, 16]}


async def test_a_worker_killed_on_timeout_takes_its_processes(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = await make_client("compat-spawner", workers=1, predict_timeout=5)
    pids_file = tmp_path / "pids.json"
    resp = await client.post(
        PREDICT, params={"how": "leave-hang", "pids_file": str(pids_file)}
    )
    assert resp.status == 504, await resp.text()
    pids = started_pids(pids_file)
    started = [pids["worker"], *pids["pool"], pids["subprocess"]]
    try:
        wait_for(lambda: all_gone(started), "the worker's processes to end")
    finally:
        kill_leftovers(started)
    # The restarted worker serves again.
    resp = await client.post(PREDICT, params={"how": "pool"})
    assert resp.status == 200, await resp.text()


def test_killing_the_server_takes_its_workers_and_their_processes(
    installed_models: Path, tmp_path: Path
) -> None:
    started: list[int] = []
    server = RunningServer(
        "--model-name", "compat-spawner", "--workers", "1",
        env=subprocess_env(installed_models), log=tmp_path / "server.log",
    )  # fmt: skip
    try:
        url = server.wait_serving()
        pids_file = tmp_path / "pids.json"
        url = (f"{url}{PREDICT}?how=leave&pids_file="
               f"{urllib.request.quote(str(pids_file))}")
        with urllib.request.urlopen(
            urllib.request.Request(url, data=b"", method="POST"), timeout=60
        ) as resp:
            assert resp.status == 200
        pids = started_pids(pids_file)
        started += [pids["worker"], *pids["pool"], pids["subprocess"],
                    *guards_of(pids["worker"])]
        assert not all_gone(started)
        server.terminate(signal.SIGKILL, timeout=10)
        wait_for(lambda: all_gone(started),
                 "the worker, its pool, its subprocess and its guard to end")
    finally:
        server.close()
        kill_leftovers(started)


def test_deepaas_predict_workers_may_start_processes(
    installed_models: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('{"how": "pool"}\n{"how": "executor"}\n')
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "deepaas.cmd.predict", "--model-name",
         "compat-spawner", "--input-jsonl", str(inputs), "-o", str(out),
         "--workers", "1"],
        env=subprocess_env(installed_models), capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in
               (out / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok"], records
    assert [r["output"]["predictions"] for r in records] == [
        {"squares": [0, 1, 4, 9, 16]}] * 2
