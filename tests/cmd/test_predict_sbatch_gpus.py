"""Which GPUs a ``deepaas-predict --print-sbatch`` job array asks SLURM for.

A GPU line in the script makes every task wait for a GPU and be charged for
it, so it is written only when the tasks will use one: a model that needs
GPUs gets its count; one that merely can use a GPU gets none unless asked
(``--gpus auto`` or a list), only a commented line saying how; ``--gpus
none`` never asks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

PREDICT = str(Path(sys.executable).parent / "deepaas-predict")

pytestmark = pytest.mark.slow


def print_sbatch(
    site: Path, folder: Path, model: str, *options: str
) -> subprocess.CompletedProcess[str]:
    data = folder / "data"
    data.mkdir(exist_ok=True)
    (data / "a.txt").write_text("x")
    return subprocess.run(
        [PREDICT, "data", "-o", "out", "--model-name", model, "--print-sbatch",
         *options],
        cwd=folder, env=subprocess_env(site), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def gpu_lines(script: str) -> list[str]:
    return [line for line in script.splitlines() if "--gpus" in line]


@pytest.mark.parametrize(
    ("model", "options", "lines"),
    [
        ("batch-gpu-preferred", ["--gpus", "none"], []),
        ("batch-gpu", [], ["#SBATCH --gpus=1"]),
        ("batch-gpu", ["--gpus", "auto"], ["#SBATCH --gpus=1"]),
        ("batch-two-gpus", [], ["#SBATCH --gpus=2"]),
        ("batch-gpu-preferred", ["--gpus", "auto"], ["#SBATCH --gpus=1"]),
        ("batch-gpu-preferred", ["--gpus", "1"], ["#SBATCH --gpus=2"]),
        ("batch-reader", [], []),
        ("batch-reader", ["--gpus", "auto"], []),
    ],
)
def test_the_gpu_line_follows_the_model_and_gpus(
    installed_models: Path, tmp_path: Path, model: str, options: list, lines: list
) -> None:
    proc = print_sbatch(installed_models, tmp_path, model, *options)
    assert proc.returncode == 0, proc.stderr
    active = [line for line in gpu_lines(proc.stdout) if line.startswith("#SBATCH")]
    assert active == lines


def test_a_model_that_only_prefers_a_gpu_gets_none_by_default(
    installed_models: Path, tmp_path: Path
) -> None:
    proc = print_sbatch(installed_models, tmp_path, "batch-gpu-preferred")
    assert proc.returncode == 0, proc.stderr
    # Commented out (SLURM reads only "#SBATCH"), with the way to ask for it.
    assert gpu_lines(proc.stdout) == [
        "# The model can use a GPU but does not need one: --gpus auto asks for",
        "##SBATCH --gpus=1",
    ]


def test_a_model_that_needs_a_gpu_with_gpus_none_is_refused(
    installed_models: Path, tmp_path: Path
) -> None:
    proc = print_sbatch(installed_models, tmp_path, "batch-gpu", "--gpus", "none")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1] == (
        "deepaas-predict: error: --gpus none: model 'batch-gpu' needs 1 GPU(s) "
        "per worker; its tasks could not start (see deepaas-predict --help)"
    )
