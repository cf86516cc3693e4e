"""deepaas-predict stopped by signals, as docs/batch.md promises.

SIGINT exits 130 after the inputs in hand had ``--term-grace`` seconds; a
second signal stops at once; the workers die with a batch process killed
by SIGKILL.  The ``batch-started`` model writes down each input it starts,
so these tests signal only once inputs are really in the workers' hands.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.processes import pid_running

SCRIPT = str(Path(sys.executable).parent / "deepaas-predict")


class Batch:
    """A deepaas-predict run over ``sleep S`` inputs, two worker processes."""

    def __init__(
        self, tmp_path: Path, installed: Path, sleeps: list[float], *options: str
    ) -> None:
        data = tmp_path / "data"
        data.mkdir()
        for i, seconds in enumerate(sleeps):
            (data / f"in_{i}.txt").write_text(f"sleep {seconds}")
        self.out = tmp_path / "out"
        self.started_file = tmp_path / "started.txt"
        self.stderr_file = tmp_path / "stderr.txt"
        self._stderr = open(self.stderr_file, "wb")
        self.process = subprocess.Popen(
            [
                SCRIPT,
                str(data),
                "-o",
                str(self.out),
                "--model-name",
                "batch-started",
                "--workers",
                "2",
                *options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=subprocess_env(
                installed, DEEPAAS_TEST_STARTED_FILE=str(self.started_file)
            ),
        )

    def started(self, count: int, timeout: float = 60) -> dict[str, int]:
        """Wait until ``count`` inputs were started; name -> worker pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.started_file.exists():
                lines = self.started_file.read_text().splitlines()
                if len(lines) >= count:
                    return {n: int(p) for n, p in (ln.split() for ln in lines)}
            assert self.process.poll() is None, self.stderr()
            time.sleep(0.02)
        raise AssertionError(f"fewer than {count} inputs started: {self.stderr()}")

    def wait_for_stderr(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            assert time.monotonic() < deadline, f"{text!r} never logged"
            time.sleep(0.02)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_file.read_text(errors="replace")

    def recorded(self) -> list[str]:
        results = self.out / "results.jsonl"
        if not results.exists():
            return []
        with open(results) as handle:
            return [Path(json.loads(line)["input"]).name for line in handle]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._stderr.close()


@pytest.fixture
def batches() -> Iterator[list[Batch]]:
    made: list[Batch] = []
    yield made
    for batch in made:
        batch.close()


@pytest.mark.slow
def test_sigint_gives_the_inputs_in_hand_the_term_grace_then_exits_130(
    installed_models: Path, tmp_path: Path, batches: list[Batch]
) -> None:
    batch = Batch(tmp_path, installed_models, [0.5, 60], "--term-grace", "2.5")
    batches.append(batch)
    batch.started(2)  # in_0 (0.5 s) and in_1 (60 s), one per worker
    signalled = time.monotonic()
    batch.process.send_signal(signal.SIGINT)
    assert batch.process.wait(30) == 130
    took = time.monotonic() - signalled
    # in_0 finished within the grace and was recorded; in_1 was cut at 2.5 s.
    assert batch.recorded() == ["in_0.txt"]
    assert 2.2 < took < 15, took  # the grace, not the default 20 s
    assert "stopped by SIGINT: rerun the same command to resume" in batch.stderr()


@pytest.mark.slow
def test_a_second_signal_stops_at_once(
    installed_models: Path, tmp_path: Path, batches: list[Batch]
) -> None:
    batch = Batch(tmp_path, installed_models, [60, 60])  # default grace: 20 s
    batches.append(batch)
    pids = set(batch.started(2).values())
    batch.process.send_signal(signal.SIGTERM)
    batch.wait_for_stderr("SIGTERM received")
    signalled = time.monotonic()
    batch.process.send_signal(signal.SIGTERM)
    assert batch.process.wait(30) == 128 + signal.SIGTERM
    assert time.monotonic() - signalled < 10
    assert "stopped at once (second signal)" in batch.stderr()
    deadline = time.monotonic() + 10
    while any(pid_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(pid_running(p) for p in pids)


@pytest.mark.slow
def test_workers_die_with_a_batch_process_killed_by_sigkill(
    installed_models: Path, tmp_path: Path, batches: list[Batch]
) -> None:
    batch = Batch(tmp_path, installed_models, [60, 60])
    batches.append(batch)
    pids = set(batch.started(2).values())
    assert len(pids) == 2 and batch.process.pid not in pids
    batch.process.kill()
    batch.process.wait()
    deadline = time.monotonic() + 10
    while any(pid_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(pid_running(p) for p in pids)  # no worker left behind
