"""deepaas-predict in real SLURM job arrays (a one-node cluster).

The ``slurm`` fixture (tests/slurm/conftest.py) starts a one-node cluster
with ``../shared/slurm/start-slurm.sh`` when it can; without one these tests
skip and say why.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SCRIPT = str(Path(sys.executable).parent / "deepaas-predict")


def make_inputs(folder: Path, count: int, fail: set[int]) -> list[str]:
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"clip_{i:04d}.txt").write_text("fail" if i in fail else "x" * i)
    return sorted(str(p) for p in folder.iterdir())


def wait_for_job(job_id: str, timeout: float = 120) -> None:
    """Poll squeue until the job (every array task) has left the queue."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = subprocess.run(
            ["squeue", "-h", "-j", job_id], capture_output=True, text=True
        )
        if queue.returncode == 0 and not queue.stdout.strip():
            return
        time.sleep(0.3)
    subprocess.run(["scancel", job_id])
    raise AssertionError(f"SLURM job {job_id} did not finish in {timeout} s")


def check_merged(out: Path, inputs: list[str], failed: int) -> None:
    merged = [json.loads(line) for line in (out / "merged.jsonl").open()]
    assert [r["input"] for r in merged] == inputs  # each exactly once, in order
    assert Counter(r["status"] for r in merged) == {
        "ok": len(inputs) - failed,
        **({"error": failed} if failed else {}),
    }
    written = Counter(
        json.loads(line)["input"]
        for path in out.glob("results-*.jsonl")
        for line in path.open()
    )
    assert set(written) == set(inputs) and set(written.values()) == {1}


def test_a_printed_sbatch_script_runs_as_an_array_and_merges(
    slurm: None, installed_models: Path, tmp_path: Path
) -> None:
    inputs = make_inputs(tmp_path / "data", 300, fail={17})
    env = subprocess_env(installed_models)
    printed = subprocess.run(
        [
            SCRIPT,
            "data",
            "-o",
            "out",
            "--model-name",
            "batch-reader",
            "--workers",
            "0",
            "--print-sbatch",
            "--tasks",
            "4",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    assert "#SBATCH --array=0-3" in printed.stdout
    (tmp_path / "job.sh").write_text(printed.stdout)
    job = subprocess.run(
        ["sbatch", "--wait", "job.sh"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    # --wait exits with the highest task status: 1, for the failing input
    assert job.returncode == 1, job.stdout + job.stderr
    logs = sorted((tmp_path / "out").glob("slurm-*.out"))
    assert len(logs) == 4
    assert any("shard 0/4 (from SLURM)" in log.read_text() for log in logs)
    merge = subprocess.run(
        [SCRIPT, "merge", "--output-dir", "out"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert merge.returncode == 1  # one input failed
    assert "300 inputs, 299 ok, 1 failed, 0 missing" in merge.stderr
    check_merged(tmp_path / "out", inputs, failed=1)


def test_a_stepped_array_with_worker_processes_covers_every_input(
    slurm: None, installed_models: Path, tmp_path: Path
) -> None:
    inputs = make_inputs(tmp_path / "data", 200, fail=set())
    out = tmp_path / "out"
    out.mkdir()
    env = subprocess_env(installed_models)
    command = (
        f"{SCRIPT} {tmp_path / 'data'} --output-dir {out} "
        "--model-name batch-reader --workers 1"
    )
    submitted = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--array=1-7:2",
            f"--output={out}/slurm-%A_%a.out",
            "--wrap",
            command,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    wait_for_job(job_id)
    names = sorted(p.name for p in out.glob("results-*.jsonl"))
    assert names == [f"results-{k:04d}-of-0004.jsonl" for k in range(4)], [
        log.read_text() for log in out.glob("slurm-*.out")
    ]
    merge = subprocess.run(
        [SCRIPT, "merge", "--output-dir", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert merge.returncode == 0, merge.stderr
    check_merged(out, inputs, failed=0)


def test_array_tasks_restarting_another_run_agree_on_one_new_run(
    slurm: None, installed_models: Path, tmp_path: Path
) -> None:
    inputs = make_inputs(tmp_path / "data", 60, fail=set())
    out = tmp_path / "out"
    env = subprocess_env(installed_models)
    base = [SCRIPT, str(tmp_path / "data"), "--output-dir", str(out)]
    base += ["--model-name", "batch-reader", "--workers", "0"]
    first = subprocess.run(base, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    old_run = json.loads((out / "run.json").read_text())["run"]
    # Another --arg into the same folder: refused without --restart ...
    refused = subprocess.run(
        [*base, "--arg", "scale=2"], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "--arg scale was not given, now 2" in (
        refused.stderr
    )
    # ... and with it, three array tasks started together restart into one run.
    command = " ".join([*base, "--arg", "scale=2", "--restart"])
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--array=0-2", f"--output={out}/slurm-%A_%a.out",
         "--wrap", command],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    wait_for_job(submitted.stdout.strip().split(";")[0])
    logs = [log.read_text() for log in out.glob("slurm-*.out")]
    new_run = json.loads((out / "run.json").read_text())["run"]
    assert new_run != old_run, logs
    runs = Counter(
        json.loads(line)["run"]
        for path in out.glob("results-*.jsonl")
        for line in path.open()
    )
    assert runs == {new_run: 60}, logs
    merge = subprocess.run(
        [SCRIPT, "merge", "--output-dir", str(out)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert merge.returncode == 0, merge.stderr
    merged = [json.loads(line) for line in (out / "merged.jsonl").open()]
    assert [r["input"] for r in merged] == inputs
    assert {r["run"] for r in merged} == {new_run}
    assert merged[3]["output"]["predictions"]["length"] == 2 * 3
