"""The prepared GPU check (benchmarks/gpu_check.sh), as far as a CPU runs it.

A GPU machine is lent for minutes, so the script must work the first time:
here it refuses cleanly where it cannot run, and its rehearsal runs every
step on the CPU with the real servers, trainings and batch runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
STEPS = ["tests", "serve", "oom", "fault", "train", "predict", "bench"]


def gpu_check(
    *args: str, python: str = sys.executable, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """The script as a user runs it, with every GPU hidden."""
    # No wheels to install: this Python has the packages (a folder of
    # wheels for the GPU machine's Python may lie in .whl/).
    environment = {
        **os.environ,
        "PYTHON": python,
        "CUDA_VISIBLE_DEVICES": "",
        "DEEPAAS_GPU_WHEELS": "/nonexistent",
        **env,
    }
    environment.pop("OUT", None)
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_without_a_gpu_it_says_so_in_one_line_and_exits_3(tmp_path):
    done = gpu_check("--out", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    assert done.stdout.count("\n") == 1
    assert done.stdout.startswith("gpu_check: no GPU here (")
    assert "--rehearse" in done.stdout
    assert not (tmp_path / "out").exists()  # nothing was started or written


@pytest.mark.slow
def test_a_python_without_the_packages_is_named_in_one_line(tmp_path):
    bare = tmp_path / "bare"
    venv.create(bare, with_pip=False)
    done = gpu_check(python=str(bare / "bin" / "python"))
    assert done.returncode == 2
    assert done.stdout.count("\n") == 1
    assert "lacks packaging" in done.stdout


@pytest.mark.slow
def test_no_such_python_is_one_line(tmp_path):
    done = gpu_check(python=str(tmp_path / "python9"))
    assert (done.returncode, done.stdout.count("\n")) == (2, 1)
    assert "is not a command" in done.stdout


@pytest.mark.slow
def test_an_unknown_step_is_refused():
    done = gpu_check("--steps", "serve,fly")
    assert done.returncode == 2
    assert "unknown step(s) fly" in done.stderr


@pytest.mark.slow
def test_a_step_left_without_time_fails_the_run(tmp_path):
    done = gpu_check(
        "--rehearse", "--steps", "serve", "--budget", "1", "--out", str(tmp_path)
    )
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    (step,) = report["steps"]
    assert step["ok"] is False
    assert "time budget" in step["error"]
    assert "FAILED: serve" in done.stdout


@pytest.mark.slow
def test_the_rehearsal_runs_every_step_on_the_cpu(tmp_path):
    done = gpu_check("--rehearse", "--quick", "--out", str(tmp_path), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all checks passed (rehearsal on the CPU" in done.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["mode"] == "rehearsal on the CPU"
    assert [s["name"] for s in report["steps"]] == STEPS
    assert all(s["ok"] for s in report["steps"])
    steps = {s["name"]: s for s in report["steps"]}
    # GPU-only checks are reported as not applicable, never as passed.
    not_applicable = [
        c["check"] for s in report["steps"] for c in s["checks"] if c["ok"] is None
    ]
    assert "its message starts with 'out of GPU memory'" in not_applicable
    assert "its message starts with 'the GPU failed'" in not_applicable
    assert steps["predict"]["figures"]["exit_status"] == 0
    assert (
        steps["train"]["figures"]["loss_last"] < steps["train"]["figures"]["loss_first"]
    )
    cells = steps["bench"]["figures"]["cells"]
    assert set(cells) == {"bench_gpu_mlp", "bench_gpu_mlp_batched"}
    assert steps["bench"]["figures"]["batched_over_plain_c16"] > 0
    # Logs kept, the work folder gone, and no server or worker left behind.
    assert {"gpu_check.log", "pytest.log", "serve.log", "bench.log", "predict.log"} <= {
        p.name for p in tmp_path.iterdir()
    }
    assert not Path(report["work"]).exists()
    left = [
        pid
        for pid in os.listdir("/proc")
        if pid.isdigit() and report["work"].encode() in _cmdline(pid)
    ]
    assert not left


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _gpu_check_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gpu_check", ROOT / "benchmarks" / "gpu_check.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gpu_check", module)  # its dataclasses look it up
    spec.loader.exec_module(module)
    return module


def test_nvidia_smi_samples_are_read_and_unmeasured_lines_left_out():
    # nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used
    # --format=csv,noheader,nounits, on two GPUs, one not measured.
    answer = (
        "2026/12/07 10:00:01.123, 0, 87, 20480\n"
        "2026/12/07 10:00:01.125, 1, [N/A], [N/A]\n"
    )
    assert _gpu_check_module().parse_samples(answer) == [(87.0, 20480.0)]


def test_torch_and_nvidia_smi_name_one_gpu_alike():
    same_uuid = _gpu_check_module().same_uuid
    smi = "GPU-3e1f4b0a-9c2d-4f6e-8a1b-2c3d4e5f6a7b"
    assert same_uuid("3e1f4b0a-9c2d-4f6e-8a1b-2c3d4e5f6a7b", smi)
    assert same_uuid("3E1F4B0A9C2D4F6E8A1B2C3D4E5F6A7B", smi)
    assert not same_uuid("3e1f4b0a-9c2d-4f6e-8a1b-2c3d4e5f6a7c", smi)
    assert not same_uuid("", smi)
