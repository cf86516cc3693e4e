"""How many private copies deepaas-predict makes ahead, and models that wipe them.

The batch process copies each input just before handing it to a worker,
ahead of the worker's pace, so copies of several inputs sit in the run's
temporary folder at once.  docs/batch.md bounds them per worker, in inputs
and in bytes; a model here counts, at each call, the copies beside its own,
through a real ``deepaas-predict``.  A model may also empty its temporary
folder (or ``$TMPDIR``) and with it the copies made for the next inputs:
every input must still get its own, readable copy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deepaas.batch.pool import BYTES_AHEAD, INPUTS_AHEAD
from tests.conftest import subprocess_env

PREDICT = str(Path(sys.executable).parent / "deepaas-predict")
MIB = 1024 * 1024

pytestmark = pytest.mark.slow


def predict(
    site: Path, scratch: Path, *args: str | Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PREDICT, "--model-name", "batch-copies", *map(str, args)],
        env=subprocess_env(site, TMPDIR=str(scratch)),
        capture_output=True,
        text=True,
        timeout=180,
    )


def answers(out: Path) -> dict[str, dict]:
    """Each input's answer by file name; every record must be ``ok``."""
    found = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert record["status"] == "ok", record
        found[Path(record["input"]).name] = record["output"]["predictions"]
    return found


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    return folder


def test_a_worker_holds_at_most_the_documented_number_of_copies(
    installed_models: Path, tmp_path: Path, scratch: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(40):
        (data / f"in_{i:02d}.bin").write_bytes(b"x" * (100 + i))
    out = tmp_path / "out"
    proc = predict(installed_models, scratch, data, "-o", out, "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    got = answers(out)
    assert len(got) == 40
    assert all(a["size"] == 100 + int(n[3:5]) for n, a in got.items())
    most = max(a["copies"] for a in got.values())
    assert 1 <= most <= INPUTS_AHEAD == 16, most
    assert list(scratch.iterdir()) == []


def test_copies_ahead_are_bounded_in_bytes(
    installed_models: Path, tmp_path: Path, scratch: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    size = 8 * MIB
    for i in range(30):
        (data / f"big_{i:02d}.bin").write_bytes(bytes([i]) * size)
    out = tmp_path / "out"
    # A model a little slower than copying its input: the copies made ahead
    # pile up as far as the bounds let them.
    proc = predict(
        installed_models, scratch, data, "-o", out, "--workers", "1",
        "--arg", "pause=0.004",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = answers(out)
    assert len(got) == 30 and all(a["size"] == size for a in got.values())
    # Beyond its first two inputs a worker gets another only while their
    # copies hold less than BYTES_AHEAD: at most one input more than that.
    most = max(a["bytes"] for a in got.values())
    assert BYTES_AHEAD == 64 * MIB
    assert most <= max(2 * size, BYTES_AHEAD - 1 + size), most / MIB


@pytest.mark.parametrize(
    ("wipe", "workers"), [("folder", "1"), ("tmpdir", "1"), ("folder", "0")]
)
def test_a_model_that_wipes_its_temporary_folder_fails_no_input(
    installed_models: Path, tmp_path: Path, scratch: Path, wipe: str, workers: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(30):
        (data / f"in_{i:02d}.bin").write_bytes(b"y" * (10 + i))
    out = tmp_path / "out"
    proc = predict(
        installed_models, scratch, data, "-o", out, "--workers", workers,
        "--arg", f"wipe={wipe}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = answers(out)
    assert len(got) == 30
    for name, answer in got.items():
        assert answer["size"] == 10 + int(name[3:5])
    assert list(scratch.iterdir()) == []
    assert sorted(p.name for p in data.iterdir()) == sorted(got)
