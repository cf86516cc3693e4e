"""deepaas-predict -i FILE -o DIR, DEEPaaS 2.x's one-file form, run for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

SCRIPT = str(Path(sys.executable).parent / "deepaas-predict")

pytestmark = pytest.mark.slow


def predict(*argv: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, "--model-name", "deepaas-demo", "--workers", "0", *map(str, argv)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_one_input_file_also_gets_2x_out_name_json(tmp_path: Path) -> None:
    flower = tmp_path / "iris.sample.csv"
    flower.write_text("5.1,3.5,1.4,0.2\n")
    out = tmp_path / "out"
    proc = predict("-i", flower, "-o", out)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads((out / "out_iris.sample.json").read_text())
    record = json.loads((out / "results.jsonl").read_text())
    assert answer == record["output"]
    assert answer["predictions"][0]["label"] == "setosa"
    assert not list(out.glob(".*part"))


def test_no_2x_file_for_several_inputs_or_a_failed_one(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("5.1,3.5,1.4,0.2\n")
    second.write_text("6.6,3.0,5.6,2.0\n")
    several = predict("-i", first, "-i", second, "-o", tmp_path / "several")
    assert several.returncode == 0, several.stderr
    assert not list((tmp_path / "several").glob("out_*"))
    broken = tmp_path / "broken.csv"
    broken.write_text("not a flower\n")
    failed = predict("-i", broken, "-o", tmp_path / "failed")
    assert failed.returncode != 0
    assert not list((tmp_path / "failed").glob("out_*"))
