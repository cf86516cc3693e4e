"""What deepaas-cli says when the model refuses the arguments as a whole.

A model may reject a combination of arguments rather than one of them (the
demo model wants ``data`` or ``sample``); marshmallow files such an error
under ``_schema``, which is no option of the command line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

CLI = str(Path(sys.executable).parent / "deepaas-cli")

pytestmark = pytest.mark.slow


def test_the_demo_without_inputs_names_no_fake_option(tmp_path: Path) -> None:
    proc = subprocess.run(
        [CLI, "--model-name", "deepaas-demo", "predict"],
        env=subprocess_env(DEEPAAS_DEMO_DIR=str(tmp_path / "demo")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        "deepaas-cli: error: invalid arguments: give either a CSV file as 'data' "
        "or four numbers as 'sample'"
    )
    assert "_schema" not in proc.stderr and proc.stdout == ""


def test_an_argument_error_still_names_its_option(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            CLI,
            "--strict",
            "--model-name",
            "deepaas-demo",
            "predict",
            "--sample",
            "[1, 2]",
        ],
        env=subprocess_env(DEEPAAS_DEMO_DIR=str(tmp_path / "demo")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "deepaas-cli: error: invalid arguments: --sample: Length must be 4."
    )
