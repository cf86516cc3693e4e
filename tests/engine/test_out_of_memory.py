"""A prediction that runs out of GPU memory, as a client and an operator see it.

The models raise torch's real ``OutOfMemoryError`` (no GPU needed): the
client gets a 500 whose message says "out of GPU memory" with torch's text,
the worker logs what it released and serves the next call itself (same
pid), and the other models' workers never notice.
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
from tests.fake_models.memory import TORCH_MESSAGE
from tests.servers import RunningServer

pytestmark = pytest.mark.slow

CLEAR = f"out of GPU memory: {TORCH_MESSAGE}"


def predict(server: RunningServer, model: str, **args: Any) -> tuple[int, Any]:
    return server.post(f"/v2/models/{model}/predict/", args)


def released_lines(server: RunningServer, model: str, method: str) -> list[str]:
    wanted = f"model {model!r}: out of GPU memory in {method}; "
    return [line for line in server.stderr().splitlines() if wanted in line]


def wait_for_log(server: RunningServer, model: str, method: str) -> list[str]:
    """The worker logs once it has answered: give its line a moment to land."""
    deadline = time.monotonic() + 10
    while not (lines := released_lines(server, model, method)):
        assert time.monotonic() < deadline, server.stderr()
        time.sleep(0.05)
    return lines


def test_a_worker_out_of_gpu_memory_answers_clearly_and_keeps_serving(
    installed_models: Path, tmp_path: Path
) -> None:
    with RunningServer(
        "--model-name", "out-of-memory", "--model-name", "wraps-out-of-memory",
        "--model-name", "batched-out-of-memory", "--model-name", "pid",
        "--workers", "1", "--state-dir", str(tmp_path / "state"),
        env=subprocess_env(installed_models), log=tmp_path / "server.log",
    ) as server:  # fmt: skip
        server.wait_serving()
        status, answer = predict(server, "out-of-memory")
        assert status == 200, answer
        worker = answer["predictions"]["pid"]
        status, answer = predict(server, "pid")
        other = answer["predictions"]["pid"]

        status, answer = predict(server, "out-of-memory", oom=True)
        assert status == 500
        assert answer == {"message": CLEAR}
        # No GPU here, so torch never initialised CUDA: nothing was cached.
        (line,) = wait_for_log(server, "out-of-memory", "predict")
        assert line.endswith("no cached GPU memory to release")
        assert "WARNING" in line

        # The same worker answers the next call: recovered, not restarted.
        status, answer = predict(server, "out-of-memory")
        assert (status, answer["predictions"]["pid"]) == (200, worker)
        # The other model's worker never noticed.
        status, answer = predict(server, "pid")
        assert (status, answer["predictions"]["pid"]) == (200, other)

        # A model that wraps torch's error in its own is recognised too.
        status, answer = predict(server, "wraps-out-of-memory", oom=True)
        assert (status, answer) == (500, {"message": CLEAR})
        wait_for_log(server, "wraps-out-of-memory", "predict")

        # A batch that runs out of memory fails every request in it, clearly.
        with ThreadPoolExecutor(5) as pool:
            blocker = pool.submit(predict, server, "batched-out-of-memory", sleep=1.0)
            time.sleep(0.3)  # the blocker holds the worker: the next four queue
            batch = [
                pool.submit(predict, server, "batched-out-of-memory", oom=i == 2)
                for i in range(4)
            ]
            assert blocker.result()[0] == 200
            answers = [future.result() for future in batch]
        assert answers == [(500, {"message": CLEAR})] * 4
        (line,) = wait_for_log(server, "batched-out-of-memory", "predict_batch")
        status, answer = predict(server, "batched-out-of-memory")
        assert status == 200
        assert answer["predictions"]["pid"] == blocker.result()[1]["predictions"]["pid"]

        # Operators count them per model; no worker was restarted.
        _, _, metrics = server.request("GET", "/metrics")
        assert counted(metrics, "deepaas_predict_out_of_gpu_memory_total") == {
            "out-of-memory": 1,
            "wraps-out-of-memory": 1,
            "batched-out-of-memory": 4,
            "pid": 0,
        }
        restarts = counted(metrics, "deepaas_worker_restarts_total")
        assert set(restarts.values()) == {0}
        assert server.terminate() == 0


def counted(metrics: bytes, name: str) -> dict[str, float]:
    """A counter's samples by model (summed over its other labels)."""
    counts: dict[str, float] = {}
    for line in metrics.decode().splitlines():
        if line.startswith(name + "{"):
            model = line.split('model="', 1)[1].split('"', 1)[0]
            counts[model] = counts.get(model, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def test_in_process_models_out_of_gpu_memory_answer_clearly(
    installed_models: Path, tmp_path: Path
) -> None:
    with RunningServer(
        "--model-name", "out-of-memory", "--model-name", "batched-out-of-memory",
        "--workers", "0", "--state-dir", str(tmp_path / "state"),
        env=subprocess_env(installed_models), log=tmp_path / "server.log",
    ) as server:  # fmt: skip
        server.wait_serving()
        assert predict(server, "out-of-memory", oom=True) == (500, {"message": CLEAR})
        wait_for_log(server, "out-of-memory", "predict")
        status, answer = predict(server, "out-of-memory")
        assert (status, answer["predictions"]["pid"]) == (200, server.pid)
        answer = predict(server, "batched-out-of-memory", oom=True)
        assert answer == (500, {"message": CLEAR})
        wait_for_log(server, "batched-out-of-memory", "predict_batch")
        assert predict(server, "batched-out-of-memory")[0] == 200
        assert server.terminate() == 0


@pytest.mark.parametrize("workers", ["0", "1"])
def test_deepaas_predict_records_the_input_that_ran_out_of_gpu_memory(
    installed_models: Path, tmp_path: Path, workers: str
) -> None:
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('{"oom": false}\n{"oom": true}\n{"oom": false}\n')
    out = tmp_path / "out"
    script = str(Path(sys.executable).parent / "deepaas-predict")
    proc = subprocess.run(
        [script, "--input-jsonl", str(inputs), "-o", str(out),
         "--model-name", "out-of-memory", "--workers", workers],
        env=subprocess_env(installed_models), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    with open(out / "results.jsonl") as handle:
        got = {r["input"].rsplit(":", 1)[1]: r for r in map(json.loads, handle)}
    assert sorted(got) == ["1", "2", "3"], proc.stderr
    assert got["2"]["error_type"] == "GpuOutOfMemory"
    assert got["2"]["error"] == CLEAR
    pids = {got[key]["output"]["predictions"]["pid"] for key in ("1", "3")}
    assert len(pids) == 1  # the process that failed the second input did the third
    assert "model 'out-of-memory': out of GPU memory in predict; " in proc.stderr


def test_a_training_out_of_gpu_memory_ends_failed_with_the_message(
    installed_models: Path, tmp_path: Path
) -> None:
    with RunningServer(
        "--model-name", "out-of-memory", "--state-dir", str(tmp_path / "state"),
        env=subprocess_env(installed_models), log=tmp_path / "server.log",
    ) as server:  # fmt: skip
        server.wait_serving()
        status, training = server.post("/v2/models/out-of-memory/train/", {"oom": True})
        assert status == 200, training
        uuid = training["uuid"]
        deadline = time.monotonic() + 30
        while (state := server.get(f"/v2/models/out-of-memory/train/{uuid}")[1])[
            "status"
        ] in ("queued", "running"):
            assert time.monotonic() < deadline, state
            time.sleep(0.1)
        assert state["status"] == "error"
        assert state["message"] == CLEAR
        assert server.terminate() == 0
