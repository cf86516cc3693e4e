"""Resuming belongs to one run: what defines it is recorded and checked.

A command into an output folder that holds another run's results (another
model, model version, ``--arg``, ``--accept`` or file argument) is refused
with one line naming the difference and exit status 2, leaving
``run.json`` as it was; ``--restart`` starts a new run there, and records
of another run never count as done.  The tasks of one job array, started
together into one folder, agree.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deepaas.cmd.predict import main
from tests.conftest import subprocess_env

SCRIPT = str(Path(sys.executable).parent / "deepaas-predict")


def make_inputs(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"in_{i:02d}.txt"
        path.write_text("x" * (i + 1))
        paths.append(path)
    return paths


def records(out: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(out.glob("results*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def predict(*args: object) -> int:
    return main([str(a) for a in args])


@pytest.fixture
def done(installed_models: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A folder of 5 inputs, all done by batch-reader with --arg scale=2."""
    make_inputs(tmp_path / "data", 5)
    out = tmp_path / "out"
    code = predict(
        tmp_path / "data", "-o", out, "--model-name", "batch-reader",
        "--arg", "scale=2", "--workers", "0",
    )  # fmt: skip
    assert code == 0
    return tmp_path / "data", out


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (["--model-name", "batch-harmful"], "the model was 'batch-reader', now "
         "'batch-harmful'"),
        (["--arg", "scale=3"], "--arg scale was 2, now 3"),
        (["--arg", "scale=2", "--arg", "tags=a"], "--arg tags was not given, now a"),
        (["--arg", "scale=2", "--accept", "text/plain"],
         "the media type (--accept) was 'application/json', now 'text/plain'"),
    ],
)  # fmt: skip
def test_a_rerun_that_differs_is_refused_naming_the_difference(
    done: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    change: list[str],
    named: str,
) -> None:
    data, out = done
    recorded = (out / "run.json").read_bytes()
    capsys.readouterr()
    argv = [data, "-o", out, "--model-name", "batch-reader", "--workers", "0"]
    if change[0] == "--model-name":
        argv[3:5] = change
    else:
        argv += change
    assert predict(*argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("deepaas-predict: error: ")
    assert f"{out} holds the results of another run ({named})" in last
    assert "--restart" in last and "done earlier" not in err
    assert (out / "run.json").read_bytes() == recorded
    assert len(records(out)) == 5


def test_the_same_run_resumes_even_with_its_defaults_spelled_out(
    done: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = done
    (data / "in_09.txt").write_text("new")
    capsys.readouterr()
    code = predict(
        data, "-o", out, "--model-name", "batch-reader", "--arg", "scale=2",
        "--accept", "application/json", "--file-arg", "data", "--workers", "0",
    )  # fmt: skip
    assert code == 0
    assert "6 inputs: 1 ok, 0 failed, 5 skipped (done earlier)" in (
        capsys.readouterr().err
    )
    run = json.loads((out / "run.json").read_text())
    assert {r["run"] for r in records(out)} == {run["run"]}
    assert run["count"] == 6 and run["args"] == {"scale": ["2"]}
    assert (run["model"], run["accept"], run["file_arg"]) == (
        "batch-reader",
        "application/json",
        "data",
    )


def test_restart_starts_a_new_run_whose_records_alone_count(
    done: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = done
    first = json.loads((out / "run.json").read_text())["run"]
    argv = [data, "-o", out, "--model-name", "batch-reader", "--workers", "0"]
    assert predict(*argv, "--arg", "scale=3", "--restart") == 0
    second = json.loads((out / "run.json").read_text())["run"]
    assert second != first
    by_run = [r["run"] for r in records(out)]
    assert by_run.count(first) == 5 and by_run.count(second) == 5
    capsys.readouterr()
    assert predict("merge", "-o", out) == 0
    merged = [json.loads(line) for line in (out / "merged.jsonl").open()]
    assert {r["run"] for r in merged} == {second}
    assert [r["output"]["predictions"]["length"] for r in merged] == [3, 6, 9, 12, 15]
    # going back to the first run's options is another run again
    assert predict(*argv, "--arg", "scale=2") == 2
    # restarting with the same options redoes everything
    assert predict(*argv, "--arg", "scale=3", "--restart") == 0
    assert len(records(out)) == 15


def test_a_new_model_version_is_another_run_even_when_all_is_done(
    installed_models: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_inputs(tmp_path / "data", 3)
    out = tmp_path / "out"
    argv = [tmp_path / "data", "-o", out, "--model-name", "batch-harmful"]
    argv += ["--workers", "0"]
    monkeypatch.setenv("BATCH_HARMFUL_VERSION", "1.0")
    assert predict(*argv) == 0
    assert predict(*argv) == 0  # all done: nothing to do
    monkeypatch.setenv("BATCH_HARMFUL_VERSION", "1.1")
    capsys.readouterr()
    assert predict(*argv) == 2
    assert "model version was '1.0', now '1.1'" in capsys.readouterr().err
    assert len(records(out)) == 3


def test_records_without_this_runs_id_are_never_counted_as_done(
    installed_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = make_inputs(tmp_path / "data", 3)
    out = tmp_path / "out"
    out.mkdir()
    # a folder written before runs had ids: a record, and run.json without one
    (out / "results.jsonl").write_text(
        json.dumps({"input": str(inputs[0]), "status": "ok", "output": 1}) + "\n"
    )
    (out / "run.json").write_text(json.dumps({"model": "batch-reader"}))
    code = predict(
        tmp_path / "data", "-o", out, "--model-name", "batch-reader", "--workers", "0"
    )
    assert code == 0
    assert "3 inputs: 3 ok, 0 failed in" in capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())["run"]
    assert [r.get("run") for r in records(out)] == [None, run, run, run]


def test_a_refused_bad_argument_leaves_no_run_in_the_way(
    installed_models: Path, tmp_path: Path
) -> None:
    make_inputs(tmp_path / "data", 2)
    argv = [tmp_path / "data", "-o", tmp_path / "out", "--model-name"]
    argv += ["batch-reader", "--workers", "0"]
    assert predict(*argv, "--arg", "scale=0") == 2  # nothing recorded
    assert predict(*argv, "--arg", "scale=1") == 0


@pytest.mark.slow
def test_array_tasks_of_one_run_agree_also_when_they_restart(
    installed_models: Path, tmp_path: Path
) -> None:
    make_inputs(tmp_path / "data", 12)
    out = tmp_path / "out"
    argv = [SCRIPT, str(tmp_path / "data"), "-o", str(out)]
    argv += ["--model-name", "batch-reader", "--workers", "0"]

    def array(job: str, *extra: str) -> None:
        tasks = [
            subprocess.Popen(
                [*argv, *extra],
                env=subprocess_env(
                    installed_models,
                    SLURM_ARRAY_JOB_ID=job,
                    SLURM_ARRAY_TASK_ID=str(task),
                    SLURM_ARRAY_TASK_MIN="0",
                    SLURM_ARRAY_TASK_COUNT="3",
                ),
                stderr=subprocess.PIPE,
                text=True,
            )
            for task in range(3)
        ]
        for task in tasks:
            _, err = task.communicate(timeout=120)
            assert task.returncode == 0, err

    array("100")  # three tasks start together into a new folder
    first = json.loads((out / "run.json").read_text())["run"]
    assert len(records(out)) == 12 and {r["run"] for r in records(out)} == {first}
    array("101", "--arg", "scale=2", "--restart")  # each task restarts: one run
    second = json.loads((out / "run.json").read_text())["run"]
    assert second != first
    assert [r["run"] for r in records(out)].count(second) == 12
    array("101", "--arg", "scale=2", "--restart")  # a requeued task joins it
    assert len(records(out)) == 24
    merge = subprocess.run(
        [SCRIPT, "merge", "-o", str(out)],
        env=subprocess_env(installed_models),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert merge.returncode == 0, merge.stderr
    assert "12 inputs, 12 ok, 0 failed, 0 missing" in merge.stderr


def test_print_sbatch_checks_the_run_and_restarts_it_once(
    done: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = done
    argv = [data, "-o", out, "--model-name", "batch-reader", "--print-sbatch"]
    assert predict(*argv, "--arg", "scale=5") == 2
    assert "--arg scale was 2, now 5" in capsys.readouterr().err
    first = json.loads((out / "run.json").read_text())["run"]
    assert predict(*argv, "--arg", "scale=5", "--restart") == 0
    script = capsys.readouterr().out
    assert "--restart" not in script and "scale=5" in script
    run = json.loads((out / "run.json").read_text())
    assert run["run"] != first and run["args"] == {"scale": ["5"]}
    # the tasks, without --restart, join the new run
    code = predict(
        data, "-o", out, "--model-name", "batch-reader", "--arg", "scale=5",
        "--workers", "0", "--shard", "1/2",
    )  # fmt: skip
    assert code == 0
    assert [r["run"] for r in records(out)].count(run["run"]) == 2


@pytest.mark.slow
def test_worker_processes_are_stopped_when_the_run_is_refused(
    done: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = done
    (data / "in_07.txt").write_text("new input: there is work to do")
    code = predict(
        data, "-o", out, "--model-name", "batch-reader", "--arg", "scale=4",
        "--workers", "1",
    )  # fmt: skip
    assert code == 2
    assert "--arg scale was 2, now 4" in capsys.readouterr().err
    assert len(records(out)) == 5
