"""A printed job script with ``#SBATCH --gpus=1`` really gets a GPU from SLURM.

The ``slurm_gpus`` fixture (tests/slurm/conftest.py) runs the one-node
cluster with pretend GPUs (``LOCAL_SLURM_GPUS``); a stand-in ``nvidia-smi``
lists the GPUs the job may use, so that deepaas-predict, inside the job,
places its worker on the GPU SLURM allocated to the task.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.slurm.test_slurm_array import wait_for_job

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SCRIPT = str(Path(sys.executable).parent / "deepaas-predict")

#: Lists SLURM_GPUS_ON_NODE GPUs inside a job (as a cluster that constrains
#: devices shows only the job's own, numbered from 0), else two.
FAKE_NVIDIA_SMI = """#!/bin/sh
i=0
while [ "$i" -lt "${SLURM_GPUS_ON_NODE:-2}" ]; do
    echo "$i, GPU-0000000$i-0000-0000-0000-000000000000, Pretend GPU, 1024 MiB"
    i=$((i + 1))
done
"""


def test_a_gpu_job_script_is_scheduled_with_its_gpu(
    slurm_gpus: int, installed_models: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.txt", "b.txt"):
        (data / name).write_text("x")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = subprocess_env(
        installed_models, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    env.pop("CUDA_VISIBLE_DEVICES", None)
    printed = subprocess.run(
        [SCRIPT, "data", "-o", "out", "--model-name", "batch-gpu-placed",
         "--print-sbatch"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert "#SBATCH --gpus=1\n" in printed.stdout
    (tmp_path / "job.sh").write_text(printed.stdout)

    submitted = subprocess.run(
        ["sbatch", "--parsable", "job.sh"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    wait_for_job(job_id)

    logs = "".join(p.read_text() for p in (tmp_path / "out").glob("slurm-*.out"))
    results = tmp_path / "out" / "results.jsonl"
    assert results.exists(), logs
    answers = [json.loads(line) for line in results.read_text().splitlines()]
    assert [a["status"] for a in answers] == ["ok", "ok"], logs
    placed = {
        (p["slurm_gpus_on_node"], p["cuda_visible_devices"], p["device"])
        for p in (a["output"]["predictions"] for a in answers)
    }
    # SLURM gave the task one GPU; the worker runs on exactly that one.
    assert placed == {("1", "0", "cuda:0")}, logs
    shown = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "gres:gpu:1" in shown.stdout, shown.stdout
