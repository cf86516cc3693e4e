"""What the research platform's serverless script relies on, run for real.

The platform runs every uploaded file through ``deepaas-cli`` in a
container: it checks the version from the last line of ``--version``,
passes the arguments of a JSON document as ``--name value`` strings, saves
the answer with ``--deepaas_method_output`` to a path without extension and
finds the real file from the ``New output is`` line of the log, field 5.
Each test runs the real console script in a subprocess and reads its output
the way that script does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deepaas import __version__
from tests.conftest import subprocess_env

BIN = Path(sys.executable).parent
CLI = str(BIN / "deepaas-cli")

pytestmark = pytest.mark.slow


def run_cli(
    site: Path, *argv: object, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """deepaas-cli with standard error in the same stream, as the platform logs it."""
    return subprocess.run(
        [CLI, *map(str, argv)],
        env=subprocess_env(site),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def platform_version(output: str) -> tuple[int, ...]:
    """The platform's reading: the last line, cut at the first '-', integers."""
    last_line = output.strip().split("\n")[-1]
    return tuple(map(int, last_line.split("-")[0].split(".")))


def new_output_path(log: str) -> str:
    """The platform's ``grep 'New output is' | cut -f 5 -d ' '``."""
    lines = [line for line in log.splitlines() if "New output is" in line]
    assert len(lines) == 1, log
    return lines[0].split(" ")[4]


@pytest.mark.parametrize("script", ["deepaas-cli", "deepaas-run", "deepaas-predict"])
def test_version_is_a_bare_version_the_platform_parses(script: str) -> None:
    proc = subprocess.run(
        [str(BIN / script), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    version = platform_version(proc.stdout)
    assert version >= (2, 5, 0)
    assert __version__.startswith(".".join(map(str, version)))
    # What `$(deepaas-run --version)` shows in the platform's log.
    assert proc.stdout.count("\n") == 1


def test_a_json_answer_gets_json_extension_and_the_new_path_is_logged(
    installed_models: Path, tmp_path: Path
) -> None:
    asked = tmp_path / "outputs" / "tmp-file-abcde"
    proc = run_cli(
        installed_models,
        "--deepaas_method_output",
        asked,
        "predict",
        "--model-name",
        "serverless",
        "--n",
        "2",
    )
    assert proc.returncode == 0, proc.stdout
    renamed = new_output_path(proc.stdout)
    assert renamed == f"{asked}.json"
    assert json.loads(Path(renamed).read_text())["n"] == 4
    assert not asked.exists()
    assert sorted(p.name for p in asked.parent.iterdir()) == ["tmp-file-abcde.json"]
    # The shell pipeline of the platform finds the same path.
    shell = subprocess.run(
        [
            "bash",
            "-c",
            f"{CLI} --deepaas_method_output {asked} predict "
            "--model-name serverless 2>&1 | grep 'New output is' | cut -f 5 -d ' '",
        ],
        env=subprocess_env(installed_models),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shell.stdout == f"{asked}.json\n"


def test_a_path_with_the_right_extension_is_kept_and_nothing_is_logged(
    installed_models: Path, tmp_path: Path
) -> None:
    asked = tmp_path / "result.json"
    proc = run_cli(
        installed_models,
        "--model-name",
        "serverless",
        "predict",
        "--deepaas_method_output",
        asked,
    )
    assert proc.returncode == 0, proc.stdout
    assert "New output is" not in proc.stdout
    assert json.loads(asked.read_text())["timestamp"] == "2023-01-01"


def test_a_file_answer_is_copied_under_its_media_type_extension(
    installed_models: Path, tmp_path: Path
) -> None:
    asked = tmp_path / "output.json"
    proc = run_cli(
        installed_models,
        "--deepaas_method_output",
        asked,
        "--model-name",
        "serverless",
        "predict",
        "--accept",
        "image/png",
        "--n",
        "3",
    )
    assert proc.returncode == 0, proc.stdout
    renamed = new_output_path(proc.stdout)
    assert renamed == f"{asked}.png"
    assert Path(renamed).read_bytes() == b"\x89PNG\r\n\x1a\n" + b"x" * 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output.json.png"]


def test_a_failed_prediction_logs_no_new_output_and_writes_nothing(
    installed_models: Path, tmp_path: Path
) -> None:
    asked = tmp_path / "out" / "tmp-file-xyz"
    proc = run_cli(
        installed_models,
        "--deepaas_method_output",
        asked,
        "--model-name",
        "serverless",
        "--no-warm",
        "predict",
    )
    assert proc.returncode == 1
    assert "New output is" not in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == (
        "deepaas-cli: error: RuntimeError: weights not loaded: warm() was not called"
    )
    assert not asked.parent.exists() or not any(asked.parent.iterdir())


def test_a_value_failing_only_a_choice_reaches_the_model_with_a_warning(
    installed_models: Path,
) -> None:
    """A published command passes a timestamp outside the field's choices."""
    proc = run_cli(
        installed_models,
        "--model-name",
        "serverless",
        "predict",
        "--timestamp",
        "2024-03-01",
        "--n",
        "5",
    )
    assert proc.returncode == 0, proc.stdout
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer == {"timestamp": "2024-03-01", "n": 10, "size": None}
    warnings = [line for line in proc.stdout.splitlines() if "WARNING" in line]
    assert len(warnings) == 2
    assert (
        "--timestamp '2024-03-01' fails the model's check (Must be one of: "
        "2023-01-01, 2023-06-01.)" in warnings[0]
    )
    assert "--n 5 fails the model's check" in warnings[1]
    assert all("--strict refuses it" in line for line in warnings)


@pytest.mark.parametrize("where", ["before", "after"])
def test_strict_refuses_a_value_that_fails_a_check(
    installed_models: Path, where: str
) -> None:
    method = ["predict", "--timestamp", "2024-03-01"]
    argv = ["--strict", *method] if where == "before" else [*method, "--strict"]
    proc = run_cli(installed_models, "--model-name", "serverless", *argv)
    assert proc.returncode == 2
    assert proc.stdout.strip() == (
        "deepaas-cli: error: invalid arguments: --timestamp: Must be one of: "
        "2023-01-01, 2023-06-01."
    )


def test_a_value_that_cannot_be_converted_is_refused_even_without_strict(
    installed_models: Path,
) -> None:
    proc = run_cli(
        installed_models, "--model-name", "serverless", "predict", "--n", "two"
    )
    assert proc.returncode == 2
    assert proc.stdout.strip() == (
        "deepaas-cli: error: invalid arguments: --n: Not a valid integer."
    )


def test_a_model_that_loads_its_weights_in_warm_answers_its_first_call(
    installed_models: Path, tmp_path: Path
) -> None:
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"jpeg" * 10)
    proc = run_cli(
        installed_models, "--model-name", "serverless", "predict", "--image", image
    )
    assert proc.returncode == 0, proc.stdout
    assert json.loads(proc.stdout) == {"timestamp": "2023-01-01", "n": 2, "size": 40}
    skipped = run_cli(
        installed_models, "--model-name", "serverless", "predict", "--no-warm"
    )
    assert skipped.returncode == 1
    assert "warm() was not called" in skipped.stdout
