"""A call whose GPU failed, as a client and an operator see it.

The models raise torch's real ``AcceleratorError`` of a device-side assert,
or older torch's ``RuntimeError`` of an illegal memory access (no GPU
needed).  The client gets a 500 saying "the GPU failed" with torch's text;
the worker that answered it exits and a fresh one (another pid) serves the
next calls, the calls that queued behind included; /metrics counts the
restart with cause ``gpu_failed``; the other models' workers never notice.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import subprocess_env
from tests.fake_models.gpu_faults import ASSERT_TEXT, ILLEGAL_ACCESS_TEXT
from tests.servers import RunningServer

pytestmark = pytest.mark.slow

ASSERT_LINE = " ".join(ASSERT_TEXT.split())
REPLACED = "this worker cannot use its GPU any more and is replaced"
CLEAR = f"the GPU failed: {ASSERT_LINE}; {REPLACED}"
CLEAR_OLD = f"the GPU failed: {' '.join(ILLEGAL_ACCESS_TEXT.split())}; {REPLACED}"
MUST_RESTART = "this process cannot use its GPU any more and must be restarted"


def predict(server: RunningServer, model: str, **args: Any) -> tuple[int, Any]:
    return server.post(f"/v2/models/{model}/predict/", args)


def pid_of(answer: tuple[int, Any]) -> int:
    status, body = answer
    assert status == 200, body
    return int(body["predictions"]["pid"])


def log_lines(server: RunningServer, wanted: str) -> list[str]:
    return [line for line in server.stderr().splitlines() if wanted in line]


def wait_for_log(server: RunningServer, wanted: str, count: int = 1) -> list[str]:
    deadline = time.monotonic() + 15
    while len(lines := log_lines(server, wanted)) < count:
        assert time.monotonic() < deadline, server.stderr()
        time.sleep(0.05)
    return lines


def restarts(metrics: bytes) -> dict[tuple[str, str], float]:
    """``deepaas_worker_restarts_total`` by (model, cause)."""
    name = "deepaas_worker_restarts_total"
    counts: dict[tuple[str, str], float] = {}
    for line in metrics.decode().splitlines():
        if line.startswith(name + "{"):
            pairs = line[len(name) + 1 : line.index("}")].split(",")
            labels = dict(pair.split("=", 1) for pair in pairs)
            key = (labels["model"].strip('"'), labels["cause"].strip('"'))
            counts[key] = float(line.rsplit(" ", 1)[1])
    return counts


def test_a_worker_whose_gpu_failed_answers_clearly_and_is_replaced(
    installed_models: Path, tmp_path: Path
) -> None:
    with RunningServer(
        "--model-name", "gpu-fault", "--model-name", "batched-gpu-fault",
        "--model-name", "pid", "--workers", "1",
        "--state-dir", str(tmp_path / "state"),
        env=subprocess_env(installed_models), log=tmp_path / "server.log",
    ) as server:  # fmt: skip
        server.wait_serving()
        first = pid_of(predict(server, "gpu-fault"))
        other = pid_of(predict(server, "pid"))

        # The failing call holds the only worker while three more queue
        # behind it: it is answered clearly, and they by its replacement.
        with ThreadPoolExecutor(4) as pool:
            failing = pool.submit(predict, server, "gpu-fault", fail="assert", sleep=1)
            time.sleep(0.4)
            queued = [pool.submit(predict, server, "gpu-fault") for _ in range(3)]
            assert failing.result() == (500, {"message": CLEAR})
            pids = {pid_of(future.result()) for future in queued}
        (second,) = pids
        assert second != first
        (line,) = wait_for_log(server, "model 'gpu-fault': the GPU failed in predict")
        assert "ERROR" in line
        assert line.endswith(
            "model 'gpu-fault': the GPU failed in predict (device-side assert "
            "triggered); this worker exits to be replaced"
        )
        assert log_lines(
            server,
            f"model 'gpu-fault': worker 0 (pid {first}) exited: its GPU failed "
            "(device-side assert triggered); restarting it",
        )
        assert pid_of(predict(server, "gpu-fault")) == second

        # Older torch's RuntimeError of an illegal memory access: the same.
        answer = predict(server, "gpu-fault", fail="illegal-access")
        assert answer == (500, {"message": CLEAR_OLD})
        third = pid_of(predict(server, "gpu-fault"))
        assert third not in (first, second)

        # A batch whose forward pass failed: every request in it says so.
        before = pid_of(predict(server, "batched-gpu-fault"))
        with ThreadPoolExecutor(5) as pool:
            blocker = pool.submit(predict, server, "batched-gpu-fault", sleep=1)
            time.sleep(0.3)  # the blocker holds the worker: the next four queue
            batch = [
                pool.submit(
                    predict, server, "batched-gpu-fault", fail="assert" * (i == 2)
                )
                for i in range(4)
            ]
            assert pid_of(blocker.result()) == before
            answers = [future.result() for future in batch]
        assert answers == [(500, {"message": CLEAR})] * 4
        wait_for_log(
            server, "model 'batched-gpu-fault': the GPU failed in predict_batch"
        )
        assert pid_of(predict(server, "batched-gpu-fault")) != before

        # The other model's worker never noticed.
        assert pid_of(predict(server, "pid")) == other
        _, _, metrics = server.request("GET", "/metrics")
        counts = restarts(metrics)
        assert counts[("gpu-fault", "gpu_failed")] == 2
        assert counts[("batched-gpu-fault", "gpu_failed")] == 1
        assert counts[("pid", "gpu_failed")] == 0
        assert sum(counts.values()) == 3  # no crash, no other cause
        status, body = server.get("/ready")
        assert (status, body["status"]) == (200, "ready"), body
        assert server.terminate() == 0


def test_in_process_a_failed_gpu_answers_clearly_and_turns_ready_off(
    installed_models: Path, tmp_path: Path
) -> None:
    with RunningServer(
        "--model-name", "gpu-fault", "--model-name", "pid", "--workers", "0",
        "--state-dir", str(tmp_path / "state"),
        env=subprocess_env(installed_models), log=tmp_path / "server.log",
    ) as server:  # fmt: skip
        server.wait_serving()
        assert server.get("/ready")[0] == 200
        answer = predict(server, "gpu-fault", fail="assert")
        assert answer == (
            500,
            {"message": f"the GPU failed: {ASSERT_LINE}; {MUST_RESTART}"},
        )
        (line,) = wait_for_log(server, "the GPU failed in predict")
        assert "ERROR" in line
        assert line.endswith(
            "model 'gpu-fault': the GPU failed in predict (device-side assert "
            "triggered); this process cannot use it any more and must be restarted"
        )
        # Nothing can replace the API process: /ready says so until restarted.
        status, body = server.get("/ready")
        assert (status, body["status"]) == (503, "not ready")
        assert body["models"]["gpu-fault"]["ready"] == 0
        assert body["models"]["gpu-fault"]["last_error"] == (
            "the GPU failed (device-side assert triggered); " + MUST_RESTART
        )
        assert body["models"]["pid"]["ready"] == 1
        assert server.terminate() == 0


def run_predict(
    installed_models: Path, inputs: Path, out: Path, workers: str
) -> subprocess.CompletedProcess[str]:
    script = str(Path(sys.executable).parent / "deepaas-predict")
    return subprocess.run(
        [script, "--input-jsonl", str(inputs), "-o", str(out),
         "--model-name", "gpu-fault", "--workers", workers],
        env=subprocess_env(installed_models), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def records(out: Path) -> dict[str, dict[str, Any]]:
    with open(out / "results.jsonl") as handle:
        return {r["input"].rsplit(":", 1)[1]: r for r in map(json.loads, handle)}


def test_deepaas_predict_replaces_a_worker_whose_gpu_failed(
    installed_models: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('{}\n{"fail": "assert"}\n{}\n{}\n')
    out = tmp_path / "out"
    proc = run_predict(installed_models, inputs, out, "1")
    assert proc.returncode == 1, proc.stderr  # an input failed
    got = records(out)
    assert sorted(got) == ["1", "2", "3", "4"], proc.stderr
    assert got["2"]["error_type"] == "GpuContextLost"
    assert got["2"]["error"] == CLEAR
    pids = [got[key]["output"]["predictions"]["pid"] for key in ("1", "3", "4")]
    assert pids[1] == pids[2] != pids[0]  # a fresh worker after the failure
    assert (
        "model 'gpu-fault': the GPU failed in predict (device-side assert "
        "triggered); this worker exits to be replaced"
    ) in proc.stderr
    assert "WorkerCrashed" not in (out / "results.jsonl").read_text()


def test_deepaas_predict_in_process_stops_when_the_gpu_failed_and_resumes(
    installed_models: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('{}\n{"fail": "illegal-access"}\n{}\n')
    out = tmp_path / "out"
    proc = run_predict(installed_models, inputs, out, "0")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "deepaas-predict: error: the GPU failed (illegal memory access) on input "
        f"{inputs}:2, and this process cannot use it any more: the run stops "
        "here; rerun the same command to resume (the records written so far "
        "are kept; --retry-errors retries the failed input)"
    )
    got = records(out)
    assert sorted(got) == ["1", "2"]
    assert got["2"]["error_type"] == "GpuContextLost"
    assert got["2"]["error"] == (
        f"the GPU failed: {' '.join(ILLEGAL_ACCESS_TEXT.split())}; {MUST_RESTART}"
    )
    # Rerunning resumes: the third input is done, the others are kept.
    again = run_predict(installed_models, inputs, out, "0")
    got = records(out)
    assert sorted(got) == ["1", "2", "3"], again.stderr
    assert got["3"]["status"] == "ok"
    assert got["2"]["error_type"] == "GpuContextLost"


def test_a_training_whose_gpu_failed_ends_failed_with_the_message(
    installed_models: Path, tmp_path: Path
) -> None:
    with RunningServer(
        "--model-name", "gpu-fault", "--state-dir", str(tmp_path / "state"),
        env=subprocess_env(installed_models), log=tmp_path / "server.log",
    ) as server:  # fmt: skip
        server.wait_serving()
        status, training = server.post(
            "/v2/models/gpu-fault/train/", {"fail": "assert"}
        )
        assert status == 200, training
        uuid = training["uuid"]
        deadline = time.monotonic() + 30
        while (state := server.get(f"/v2/models/gpu-fault/train/{uuid}")[1])[
            "status"
        ] in ("queued", "running"):
            assert time.monotonic() < deadline, state
            time.sleep(0.1)
        assert state["status"] == "error"
        assert state["message"] == (
            f"the GPU failed: {ASSERT_LINE}; the training's process cannot use "
            "its GPU any more and ends"
        )
        # Predictions are untouched: the training ran in its own process.
        assert predict(server, "gpu-fault")[0] == 200
        assert server.terminate() == 0
