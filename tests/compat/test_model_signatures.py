"""Signature mistakes are caught when the model loads, by every command.

A ``predict`` or ``train`` whose signature cannot take the arguments its
model declares would fail every request (500) or every batch input; each
command refuses such a model at start-up instead, with one line naming the
argument, and a non-zero exit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env, write_distribution

pytestmark = pytest.mark.slow

BAD_MODELS = {
    "bad-predict": "tests.fake_models.compat_model:BadPredictSignature",
    "bad-train": "tests.fake_models.compat_model:BadTrainSignature",
}

PREDICT_LINE = (
    "model 'bad-predict': predict() cannot take the argument 'image' that "
    "get_predict_args() declares"
)
TRAIN_LINE = "model 'bad-train': train() cannot take the argument 'n_epochs'"


@pytest.fixture(scope="module")
def bad_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bad models, installed on their own (nothing else serves them)."""
    return write_distribution(tmp_path_factory.mktemp("bad-site"), BAD_MODELS,
                              name="deepaas_bad_signatures")


def run(site: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], env=subprocess_env(site),
        capture_output=True, text=True, timeout=120,
    )


def assert_refused(
    proc: subprocess.CompletedProcess[str], tool: str, line: str
) -> None:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    (error,) = [text for text in output.splitlines() if "cannot take" in text]
    assert error.startswith(f"{tool}: error: {line}")


def test_deepaas_run_refuses_to_start(bad_site: Path) -> None:
    proc = run(bad_site, "deepaas.cmd.run", "--listen-port", "0",
               "--model-name", "bad-predict")
    assert_refused(proc, "deepaas-run", PREDICT_LINE)
    # Where the model runs in the server process itself, too.
    proc = run(bad_site, "deepaas.cmd.run", "--listen-port", "0",
               "--model-name", "bad-train", "--workers", "0")
    assert_refused(proc, "deepaas-run", TRAIN_LINE)


def test_deepaas_cli_refuses_the_model(bad_site: Path) -> None:
    proc = run(bad_site, "deepaas.cmd.cli", "--model-name", "bad-train", "predict")
    assert_refused(proc, "deepaas-cli", TRAIN_LINE)


def test_deepaas_predict_refuses_before_any_input(
    bad_site: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('{"image": "a"}\n{"image": "b"}\n')
    out = tmp_path / "out"
    proc = run(bad_site, "deepaas.cmd.predict", "--model-name", "bad-predict",
               "--input-jsonl", str(inputs), "-o", str(out), "--workers", "1")
    assert_refused(proc, "deepaas-predict", PREDICT_LINE)
    # No input got an error record: the run never started.
    assert not any(out.glob("**/*.jsonl"))
