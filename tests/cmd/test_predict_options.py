"""deepaas-predict options as docs/batch.md describes them.

JSON Lines values take precedence over ``--arg``; a file path in a JSON
Lines input is relative to that file's folder; ``--content-type`` is
``--accept``; ``--shard`` overrides SLURM's variables; ``--print-sbatch``
sizes the array at about 1000 inputs per task.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from deepaas.batch.sbatch import default_tasks
from deepaas.cmd.predict import main

SLURM_TASK_1_OF_2 = {
    "SLURM_ARRAY_TASK_ID": "1",
    "SLURM_ARRAY_TASK_COUNT": "2",
    "SLURM_ARRAY_TASK_MIN": "0",
    "SLURM_ARRAY_TASK_STEP": "1",
}


def run(*args: object) -> int:
    return main([str(a) for a in args])


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_line(out: Path) -> dict[str, dict[str, Any]]:
    return {r["input"].rsplit(":", 1)[1]: r for r in records(out / "results.jsonl")}


def test_jsonl_values_take_precedence_over_arg(
    installed_models: Path, tmp_path: Path
) -> None:
    lines = tmp_path / "args.jsonl"
    lines.write_text('{"a": 2}\n{"a": 2, "b": 1}\n{"a": 2, "digits": 0}\n')
    out = tmp_path / "out"
    code = run(
        "--input-jsonl", lines, "-o", out, "--model-name", "batch-divide",
        "--arg", "b=4", "--arg", "digits=2", "--workers", "0",
    )  # fmt: skip
    assert code == 0
    got = {n: r["output"]["predictions"] for n, r in by_line(out).items()}
    assert got == {"1": 0.5, "2": 2.0, "3": 0.0}  # 2/4 = 0.5, rounded to 0 digits


def test_jsonl_file_paths_are_relative_to_the_jsonl_folder(
    installed_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "lists"
    (folder / "clips").mkdir(parents=True)
    (folder / "clips" / "a.bin").write_bytes(b"12345")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "clips").mkdir()
    (tmp_path / "elsewhere" / "clips" / "a.bin").write_bytes(b"1")  # the wrong one
    lines = folder / "args.jsonl"
    lines.write_text(
        '{"n": 1, "data": "clips/a.bin"}\n'
        '{"n": 2, "data": "clips/missing.bin"}\n'
        '{"n": 3, "data": "clips"}\n'
    )
    monkeypatch.chdir(tmp_path / "elsewhere")
    out = tmp_path / "out"
    code = run(
        "--input-jsonl", Path("..") / "lists" / "args.jsonl", "-o", out,
        "--model-name", "batch-segfault", "--workers", "0",
    )  # fmt: skip
    assert code == 1
    got = by_line(out)
    assert got["1"]["output"]["predictions"] == {"n": 1, "size": 5}
    # A missing file and a folder are unreadable inputs, whoever runs this.
    assert got["2"]["error_type"] == "InputUnreadable"
    assert "missing.bin" in got["2"]["error"]
    assert got["3"]["error_type"] == "InputUnreadable"


def test_content_type_is_the_accept_option(
    installed_models: Path, tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("abc")
    out = tmp_path / "out"
    code = run(
        tmp_path / "data", "-o", out, "--model-name", "batch-reader",
        "--content-type", "text/plain", "--workers", "0",
    )  # fmt: skip
    assert code == 0
    (record,) = records(out / "results.jsonl")
    assert record["content_type"] == "text/plain"
    assert (out / record["output_file"]).read_text() == "a.txt:3\n"


def test_shard_overrides_the_slurm_variables(
    installed_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in SLURM_TASK_1_OF_2.items():
        monkeypatch.setenv(key, value)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        (data / f"in_{i}.txt").write_text("x")
    out = tmp_path / "out"
    code = run(
        data, "-o", out, "--model-name", "batch-reader", "--workers", "0",
        "--shard", "0/3",
    )  # fmt: skip
    assert code == 0
    assert [p.name for p in out.glob("results*.jsonl")] == [
        "results-0000-of-0003.jsonl"
    ]
    done = [Path(r["input"]).name for r in records(out / "results-0000-of-0003.jsonl")]
    assert done == ["in_0.txt", "in_3.txt"]  # input i goes to shard i % 3


@pytest.mark.parametrize(
    ("count", "tasks"),
    [(1, 1), (1000, 1), (1001, 2), (2500, 3), (999_999, 1000), (5_000_000, 1000)],
)
def test_the_default_array_has_about_1000_inputs_per_task(
    count: int, tasks: int
) -> None:
    assert default_tasks(count) == tasks


def test_print_sbatch_sizes_the_array_by_default(
    installed_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = tmp_path / "args.jsonl"
    lines.write_text('{"a": 1}\n' * 2500)
    code = run(
        "--input-jsonl", lines, "-o", tmp_path / "out",
        "--model-name", "batch-divide", "--print-sbatch",
    )  # fmt: skip
    script = capsys.readouterr().out
    assert code == 0
    assert "# 2500 inputs in 3 array task(s), about 834 per task." in script
    assert re.search(r"^#SBATCH --array=0-2$", script, re.MULTILINE)
