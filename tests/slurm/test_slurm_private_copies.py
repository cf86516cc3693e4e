"""In a SLURM array task too, the model gets copies, never the user's files.

The tasks run deepaas-predict over a JSON Lines input whose lines name
files, with a fixed file argument, and a model that moves both files it is
given; the user's folders must be as they were once the array is done.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.batch.test_private_copies_jsonl import make_user_folder, user_files
from tests.conftest import subprocess_env
from tests.slurm.test_slurm_array import SCRIPT, wait_for_job

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def size(path: Path) -> int:
    return path.stat().st_size


def test_array_tasks_over_json_lines_leave_the_user_files_alone(
    slurm: None, installed_models: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    make_user_folder(home)
    (home / "lists" / "args.jsonl").write_text(
        '{"data": "clips/a.wav"}\n'
        '{"data": "clips/sub/c.wav", "mask": "../masks/special.png"}\n'
        '{"data": "clips/a.wav"}\n'
        '{"data": "clips/b.wav", "mask": "clips/b.wav"}\n'
    )
    before = user_files(home)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    command = shlex.join([
        SCRIPT, "--input-jsonl", str(home / "lists" / "args.jsonl"),
        "--output-dir", str(out), "--model-name", "batch-harmful-pair",
        "--arg", f"mask={home / 'masks' / 'default.png'}", "--arg", "action=move",
        "--workers", "1",
    ])  # fmt: skip
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--array=0-1", f"--output={out}/slurm-%A_%a.out",
         "--wrap", command],
        env=subprocess_env(installed_models, TMPDIR=str(scratch)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    wait_for_job(submitted.stdout.strip().split(";")[0])
    logs = [log.read_text() for log in out.glob("slurm-*.out")]
    assert len(logs) == 2
    written = [
        json.loads(line)
        for path in sorted(out.glob("results-*-of-0002.jsonl"))
        for line in path.open()
    ]
    assert sorted(r["input"].rsplit(":", 1)[1] for r in written) == [
        "1", "2", "3", "4"
    ], logs  # fmt: skip
    assert {r["status"] for r in written} == {"ok"}, logs
    read = {  # line -> the sizes its call read, data and mask
        r["input"].rsplit(":", 1)[1]: (
            r["output"]["predictions"]["data"]["size"],
            r["output"]["predictions"]["mask"]["size"],
        )
        for r in written
    }
    a, b, c = (256 * times for times in (1, 2, 3))
    default, special = (
        size(home / "masks" / m) for m in ("default.png", "special.png")
    )
    assert read == {"1": (a, default), "2": (c, special), "3": (a, default),
                    "4": (b, b)}  # fmt: skip
    for record in written:
        for upload in record["output"]["predictions"].values():
            assert upload["path"].startswith(str(scratch))  # the task's TMPDIR
    assert user_files(home) == before
    assert list(scratch.iterdir()) == []
