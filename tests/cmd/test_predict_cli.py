"""deepaas-predict as a user runs it: inputs in, records and exit codes out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from deepaas.cmd.predict import main
from tests.conftest import subprocess_env

SCRIPT = str(Path(sys.executable).parent / "deepaas-predict")


def make_inputs(
    folder: Path, count: int, special: dict[int, str] | None = None, ext: str = ".txt"
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"in_{i:04d}{ext}"
        path.write_text((special or {}).get(i, "x" * (i % 7 + 1)))
        paths.append(path)
    return paths


def records(out: Path, name: str = "results.jsonl") -> list[dict[str, Any]]:
    with open(out / name) as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    make_inputs(tmp_path / "data", 12, {5: "fail here"})
    return tmp_path / "data"


def run(*args: object) -> int:
    return main([str(a) for a in args])


def test_a_failing_input_among_good_ones_is_recorded_and_exits_1(
    installed_models: Path,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    code = run(
        data,
        "-o",
        out,
        "--model-name",
        "batch-reader",
        "--workers",
        "0",
        "--arg",
        "scale=2",
        "--arg",
        "tags=a",
        "--arg",
        "tags=b",
    )
    assert code == 1
    got = {Path(r["input"]).name: r for r in records(out)}
    assert len(got) == 12
    assert got["in_0005.txt"]["status"] == "error"
    assert got["in_0005.txt"]["error"] == "ValueError: cannot read in_0005.txt"
    assert "Traceback" in got["in_0005.txt"]["traceback"]
    good = got["in_0003.txt"]
    assert good["status"] == "ok" and good["seconds"] >= 0
    assert good["output"]["predictions"]["length"] == 4 * 2
    assert good["output"]["predictions"]["tags"] == ["a", "b"]
    # the model reads a temporary copy of the input, and the input stays
    assert good["output"]["predictions"]["path"] != str(data / "in_0003.txt")
    assert not os.path.exists(good["output"]["predictions"]["path"])
    assert len(list(data.iterdir())) == 12
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert summary.startswith("deepaas-predict: 12 inputs: 11 ok, 1 failed in ")


def test_rerun_skips_done_inputs_and_retry_errors_redoes_failed_ones(
    installed_models: Path,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    args = [data, "-o", out, "--model-name", "batch-reader", "--workers", "0"]
    assert run(*args) == 1
    assert run(*args) == 1  # nothing redone: the failure is still there
    assert len(records(out)) == 12
    assert (
        "0 ok, 0 failed, 11 skipped (done earlier), 1 skipped (failed earlier"
        in capsys.readouterr().err
    )
    (data / "in_0005.txt").write_text("fixed")
    assert run(*args, "--retry-errors") == 0
    lines = records(out)
    assert len(lines) == 13 and lines[-1]["status"] == "ok"
    assert run(*args) == 0


def test_fail_fast_stops_at_the_first_error(
    installed_models: Path, tmp_path: Path
) -> None:
    make_inputs(tmp_path / "data", 20, {2: "fail"})
    out = tmp_path / "out"
    code = run(
        tmp_path / "data",
        "-o",
        out,
        "--model-name",
        "batch-reader",
        "--workers",
        "0",
        "--fail-fast",
    )
    assert code == 1
    assert [r["status"] for r in records(out)] == ["ok", "ok", "error"]


@pytest.mark.slow
def test_worker_processes_share_the_inputs(
    installed_models: Path, tmp_path: Path
) -> None:
    make_inputs(tmp_path / "data", 40, {7: "fail"})
    gone = tmp_path / "data" / "in_0011.txt"  # unreadable for root too
    gone.unlink()
    gone.symlink_to(tmp_path / "deleted.txt")
    out = tmp_path / "out"
    code = run(
        tmp_path / "data", "-o", out, "--model-name", "batch-reader", "--workers", "2"
    )
    got = {Path(r["input"]).name: r for r in records(out)}
    assert code == 1 and len(got) == 40
    assert got["in_0007.txt"]["error_type"] == "ModelError"
    assert got["in_0011.txt"]["error_type"] == "InputUnreadable"
    pids = {
        r["output"]["predictions"]["pid"] for r in got.values() if r["status"] == "ok"
    }
    assert len(pids) == 2 and os.getpid() not in pids


@pytest.mark.slow
def test_a_crashing_input_is_recorded_and_the_worker_restarted(
    installed_models: Path, tmp_path: Path
) -> None:
    # inputs go to the worker in chunks: the crash comes in the middle of one
    make_inputs(tmp_path / "data", 60, {3: "crash", 41: "crash"})
    out = tmp_path / "out"
    code = run(
        tmp_path / "data", "-o", out, "--model-name", "batch-reader", "--workers", "1"
    )
    lines = records(out)
    got = {Path(r["input"]).name: r for r in lines}
    assert code == 1 and len(got) == 60 == len(lines)
    for name in ("in_0003.txt", "in_0041.txt"):
        assert got[name]["error_type"] == "WorkerCrashed"
        assert "exited with code 7" in got[name]["error"]
    assert sum(r["status"] == "ok" for r in got.values()) == 58


@pytest.mark.slow
def test_a_crash_before_an_input_with_a_file_still_gets_its_record(
    installed_models: Path, tmp_path: Path
) -> None:
    # The crash is noticed while the next input (one with a file) is being
    # handed out; its record used to be lost then.
    (tmp_path / "f.txt").write_text("hello")
    args = tmp_path / "args.jsonl"
    args.write_text('{"n": 1}\n{"n": 2, "crash": true}\n{"n": 3, "data": "f.txt"}\n')
    env = subprocess_env(installed_models)
    for attempt in range(3):
        out = tmp_path / f"out{attempt}"
        proc = subprocess.run(
            [
                SCRIPT,
                "--input-jsonl",
                str(args),
                "-o",
                str(out),
                "--model-name",
                "batch-segfault",
                "--workers",
                "1",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 1, proc.stderr
        got = {r["input"].rsplit(":", 1)[1]: r for r in records(out)}
        assert sorted(got) == ["1", "2", "3"], proc.stderr
        assert got["2"]["error_type"] == "WorkerCrashed"
        assert "SIGSEGV" in got["2"]["error"]
        assert got["3"]["output"]["predictions"] == {"n": 3, "size": 5}
        assert "input " + str(args) + ":2 failed" in proc.stderr


def test_non_json_answers_are_files_with_predictable_names(
    installed_models: Path, tmp_path: Path
) -> None:
    make_inputs(tmp_path / "data" / "a", 3)
    make_inputs(tmp_path / "data" / "b", 3)
    out = tmp_path / "out"
    code = run(
        tmp_path / "data",
        "-o",
        out,
        "--model-name",
        "batch-reader",
        "--accept",
        "text/plain",
        "--workers",
        "0",
    )
    assert code == 0
    lines = records(out)
    assert len(lines) == 6
    names = {r["output_file"] for r in lines}
    assert len(names) == 6  # same file names in a/ and b/, still apart
    for record in lines:
        assert record["content_type"] == "text/plain"
        name = Path(record["output_file"]).name
        assert name.startswith(Path(record["input"]).name + "-")
        assert name.endswith(".txt")
        text = (out / record["output_file"]).read_text()
        assert text.startswith(Path(record["input"]).name + ":")
    assert not list((out / "outputs").glob(".*"))
    # a rerun finds every output file in place and redoes nothing
    assert (
        run(
            tmp_path / "data",
            "-o",
            out,
            "--model-name",
            "batch-reader",
            "--accept",
            "text/plain",
            "--workers",
            "0",
        )
        == 0
    )
    assert len(records(out)) == 6


def test_input_jsonl_gives_each_input_its_arguments(
    installed_models: Path, tmp_path: Path
) -> None:
    args = tmp_path / "args.jsonl"
    args.write_text(
        '{"a": 1, "b": 4}\n\n{"a": 2}\n{"a": 1, "b": 0}\nnot json\n{"b": 2}\n[1]\n'
    )
    out = tmp_path / "out"
    code = run(
        "--input-jsonl",
        args,
        "-o",
        out,
        "--model-name",
        "batch-divide",
        "--arg",
        "digits=1",
        "--workers",
        "0",
    )
    assert code == 1
    got = {r["input"].rsplit(":", 1)[1]: r for r in records(out)}
    assert got["1"]["output"]["predictions"] == 0.2
    assert got["3"]["output"]["predictions"] == 2.0
    assert "ZeroDivisionError" in got["4"]["error"]
    assert got["5"]["error_type"] == "InputUnreadable"
    assert got["6"]["details"] == {"a": ["Missing data for required field."]}
    assert "not a JSON object" in got["7"]["error"]
    assert "2" not in got  # the blank line is no input
    assert run("merge", "-o", out) == 1
    assert len(records(out, "merged.jsonl")) == 6


def test_shards_by_hand_cover_every_input_once_and_merge(
    installed_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_inputs(tmp_path / "data", 23)
    out = tmp_path / "out"
    for k in (0, 2):  # shard 1 of 3 not run yet
        assert (
            run(
                tmp_path / "data",
                "-o",
                out,
                "--model-name",
                "batch-reader",
                "--workers",
                "0",
                "--shard",
                f"{k}/3",
            )
            == 0
        )
    assert run("merge", "-o", out) == 1
    err = capsys.readouterr().err
    assert "23 inputs, 15 ok, 0 failed, 8 missing" in err
    assert "missing: " in err
    assert len((out / "missing.txt").read_text().splitlines()) == 8
    assert (
        run(
            tmp_path / "data",
            "-o",
            out,
            "--model-name",
            "batch-reader",
            "--workers",
            "0",
            "--shard",
            "1/3",
        )
        == 0
    )
    assert run("merge", "-o", out) == 0
    merged = records(out, "merged.jsonl")
    assert [r["input"] for r in merged] == sorted(
        str(p) for p in (tmp_path / "data").iterdir()
    )
    assert not (out / "missing.txt").exists()
    assert sorted(p.name for p in out.glob("results*")) == [
        "results-0000-of-0003.jsonl",
        "results-0001-of-0003.jsonl",
        "results-0002-of-0003.jsonl",
    ]


def test_slurm_array_variables_choose_the_shard(
    installed_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_inputs(tmp_path / "data", 10)
    out = tmp_path / "out"
    for task in (1, 3):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
        monkeypatch.setenv("SLURM_ARRAY_TASK_STEP", "2")
        assert (
            run(
                tmp_path / "data",
                "-o",
                out,
                "--model-name",
                "batch-reader",
                "--workers",
                "0",
            )
            == 0
        )
    assert len(records(out, "results-0000-of-0002.jsonl")) == 5
    assert len(records(out, "results-0001-of-0002.jsonl")) == 5
    assert run("merge", "-o", out) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no inputs"),
        (["DATA", "--input-jsonl", "DATA/in_0000.txt"], "not both"),
        (["DATA", "--arg", "nope=1"], "--arg nope: model 'batch-reader' has no such"),
        (
            ["DATA", "--arg", "scale=0"],
            "--arg scale: Must be greater than or equal to 1",
        ),
        (["DATA", "--arg", "scale"], "--arg takes NAME=VALUE"),
        (["DATA", "--accept", "image/png"], "--accept 'image/png'"),
        (["DATA", "--shard", "3/3"], "--shard takes K/N"),
        (["DATA", "--workers", "-1"], "--workers must be >= 0 (got -1)"),
        (["DATA", "--file-arg", "scale"], "--file-arg scale: not a file argument"),
        (["MISSING"], "does not exist"),
        (["DATA", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    installed_models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    data = tmp_path / "data"
    make_inputs(data, 3)
    argv = [
        a.replace("DATA", str(data)).replace("MISSING", str(tmp_path / "nope"))
        for a in args
    ]
    code = main(
        [
            "-o",
            str(tmp_path / "out"),
            "--model-name",
            "batch-reader",
            "--workers",
            "0",
            *argv,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    last = err.splitlines()[-1]
    assert last.startswith("deepaas-predict: error: ") and message in last
    assert not (tmp_path / "out" / "results.jsonl").exists() or not records(
        tmp_path / "out"
    )


def test_the_file_argument_must_be_chosen_when_there_are_several(
    installed_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_inputs(tmp_path / "data", 2)
    base = [
        tmp_path / "data",
        "-o",
        tmp_path / "out",
        "--model-name",
        "batch-two-files",
        "--workers",
        "0",
    ]
    assert run(*base) == 2
    assert (
        "several file arguments (left, right); choose one with --file-arg"
        in capsys.readouterr().err
    )
    assert (
        run(
            *base,
            "--file-arg",
            "right",
            "--arg",
            f"left={tmp_path / 'data' / 'in_0000.txt'}",
        )
        == 0
    )
    assert records(tmp_path / "out")[1]["output"]["predictions"] == {
        "left": "in_0000.txt",
        "right": "in_0001.txt",
    }


def test_print_sbatch_writes_a_job_array_script(
    installed_models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_inputs(tmp_path / "data", 30)
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "data",
            "-o",
            "out",
            "--model-name",
            "batch-gpu",
            "--print-sbatch",
            "--tasks",
            "4",
            "--arg",
            "scale=3",
            "--workers",
            "2",
        ]
    )
    script = capsys.readouterr().out
    assert code == 0
    assert script.startswith("#!/bin/bash\n")
    assert "#SBATCH --array=0-3\n" in script
    assert "#SBATCH --gpus=1\n" in script
    assert "#SBATCH --cpus-per-task=2\n" in script
    assert f"cd {tmp_path}\n" in script
    assert f"--output-dir {tmp_path / 'out'}" in script
    command = next(line for line in script.splitlines() if line.startswith("exec "))
    assert "--print-sbatch" not in command and "--tasks" not in command
    assert "scale=3" in command and "30 inputs in 4 array task(s)" in script
    assert (tmp_path / "out").is_dir()  # SLURM writes the task logs there
    code = main(["data", "-o", "out", "--model-name", "batch-reader", "--print-sbatch"])
    assert "--gpus" not in capsys.readouterr().out and code == 0


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SCRIPT, *args],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def _wait_for_records(path: Path, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path}: fewer than {count} records after {timeout} s")


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "1"])
def test_resume_after_sigkill_mid_run_redoes_only_what_is_missing(
    installed_models: Path, tmp_path: Path, workers: str
) -> None:
    make_inputs(tmp_path / "data", 30, {i: "sleep 0.05" for i in range(30)})
    out = tmp_path / "out"
    args = [
        str(tmp_path / "data"),
        "-o",
        str(out),
        "--model-name",
        "batch-reader",
        "--workers",
        workers,
    ]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = subprocess_env(installed_models, TMPDIR=str(scratch))
    proc = _start(args, env)
    _wait_for_records(out / "results.jsonl", 5)
    proc.kill()
    proc.wait()
    # a kill mid-write leaves at worst a partial last line: simulate one
    with open(out / "results.jsonl", "ab") as handle:
        handle.write(b'{"input": "' + str(tmp_path).encode())
    first = [
        json.loads(line)
        for line in (out / "results.jsonl").read_bytes().splitlines()[:-1]
    ]
    assert 5 <= len(first) < 30
    proc = _start(args, env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = (out / "results.jsonl").read_bytes().splitlines()
    whole = [json.loads(line) for line in lines if line.endswith(b"}")]
    inputs = [r["input"] for r in whole]
    assert len(inputs) == 30 == len(set(inputs))
    assert f"{len(first)} done earlier" in err
    # the copies the killed run left are removed by the next run
    assert list(scratch.iterdir()) == []
    # the partial line was ended, so the records after it are whole
    assert [line for line in lines if not line.endswith(b"}")] == [
        b'{"input": "' + str(tmp_path).encode()
    ]


@pytest.mark.slow
def test_sigterm_flushes_and_a_resubmission_resumes(
    installed_models: Path, tmp_path: Path
) -> None:
    make_inputs(tmp_path / "data", 40, {i: "sleep 0.05" for i in range(40)})
    out = tmp_path / "out"
    args = [
        str(tmp_path / "data"),
        "-o",
        str(out),
        "--model-name",
        "batch-reader",
        "--workers",
        "2",
        "--progress-interval",
        "0.2",
    ]
    env = subprocess_env(installed_models)
    proc = _start(args, env)
    _wait_for_records(out / "results.jsonl", 6)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "SIGTERM received" in err
    assert "progress: " in err and "inputs/s, ETA" in err  # not a terminal: log lines
    assert "stopped by SIGTERM: rerun the same command to resume" in err
    done = records(out)
    assert all(r["status"] == "ok" for r in done) and len(done) < 40
    proc = _start(args, env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len({r["input"] for r in records(out)}) == 40 == len(records(out))


@pytest.mark.slow
def test_a_terminal_gets_a_progress_bar(installed_models: Path, tmp_path: Path) -> None:
    make_inputs(tmp_path / "data", 15)
    leader, follower = os.openpty()
    proc = subprocess.Popen(
        [
            SCRIPT,
            str(tmp_path / "data"),
            "-o",
            str(tmp_path / "out"),
            "--model-name",
            "batch-reader",
            "--workers",
            "0",
        ],
        env=subprocess_env(installed_models),
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closes when the process ends
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    text = seen.decode(errors="replace")
    assert "100%" in text and "15/15" in text and "input/s" in text
    assert "progress: " not in text


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_model_that_cannot_load_stops_with_one_line(
    installed_models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    workers: str,
) -> None:
    make_inputs(tmp_path / "data", 2)
    code = run(
        tmp_path / "data",
        "-o",
        tmp_path / "out",
        "--model-name",
        "broken",
        "--workers",
        workers,
    )
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1
    assert last.startswith("deepaas-predict: error: model 'broken'")
    assert "this_module_does_not_exist" in last


def test_the_model_name_may_come_from_a_config_file(
    installed_models: Path, tmp_path: Path
) -> None:
    make_inputs(tmp_path / "data", 3)
    config = tmp_path / "deepaas.conf"
    config.write_text("[DEFAULT]\nmodel_name = batch-reader\nwarm = false\n")
    assert (
        run(
            tmp_path / "data",
            "-o",
            tmp_path / "out",
            "--config-file",
            config,
            "--workers",
            "0",
        )
        == 0
    )
    assert records(tmp_path / "out")[0]["output"]["predictions"]["length"] == 1
