"""A model never gets the user's own file, from deepaas-predict or deepaas-cli.

The contract lets a model move, truncate or delete the file it is given: it
is told that file is a temporary copy.  Each test runs a model that does
just that over a real folder, through the real console scripts, and checks
that the folder is unchanged byte for byte and that no copy is left in the
temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepaas.model.files import can_reflink, copy_for_model
from tests.conftest import subprocess_env

BIN = Path(sys.executable).parent
PREDICT = str(BIN / "deepaas-predict")
CLI = str(BIN / "deepaas-cli")


def make_folder(folder: Path) -> dict[str, bytes]:
    """A small folder of inputs, nested, with what each file holds."""
    (folder / "sub").mkdir(parents=True)
    for i in range(6):
        name = f"sub/clip_{i}.wav" if i % 2 else f"clip_{i}.wav"
        (folder / name).write_bytes(bytes(range(256)) * (i + 1))
    return snapshot(folder)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def results(out: Path) -> list[dict]:
    return [
        json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()
    ]


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """The temporary folder (TMPDIR) the tools make the model's copies in."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    return folder


def run(
    tool: str, *args: str | Path, site: Path, scratch: Path
) -> subprocess.CompletedProcess[str]:
    """``tool ARGS`` over the installed fake models, its copies in ``scratch``."""
    return subprocess.run(
        [tool, *args],
        env=subprocess_env(site, TMPDIR=str(scratch)),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("action", "workers"),
    [("delete", "1"), ("truncate", "1"), ("truncate", "0"), ("move", "2")],
)
def test_deepaas_predict_leaves_the_input_folder_as_it_was(
    installed_models: Path, tmp_path: Path, scratch: Path, action: str, workers: str
) -> None:
    data = tmp_path / "data"
    before = make_folder(data)
    out = tmp_path / "out"
    proc = run(
        PREDICT, data, "-o", out, "--model-name", "batch-harmful",
        "--arg", f"action={action}", "--workers", workers,
        site=installed_models, scratch=scratch,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert snapshot(data) == before
    got = {Path(r["input"]).name: r["output"]["predictions"] for r in results(out)}
    assert len(got) == 6
    sizes = {Path(name).name: len(body) for name, body in before.items()}
    for name, answer in got.items():
        # the model read the whole input, from a copy of its own
        assert answer["name"] == name and answer["size"] == sizes[name]
        assert answer["path"].startswith(str(scratch))
    assert list(scratch.iterdir()) == []  # no copy, no folder left behind


@pytest.mark.slow
def test_a_fixed_file_argument_is_copied_for_every_input(
    installed_models: Path, tmp_path: Path, scratch: Path
) -> None:
    data = tmp_path / "data"
    before = make_folder(data)
    left = tmp_path / "left.txt"
    left.write_text("the user's own")
    proc = run(
        PREDICT, data, "-o", tmp_path / "out", "--model-name", "batch-two-files",
        "--file-arg", "right", "--arg", f"left={left}", "--workers", "1",
        site=installed_models, scratch=scratch,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert snapshot(data) == before and left.read_text() == "the user's own"
    assert list(scratch.iterdir()) == []


@pytest.mark.slow
def test_a_crashing_worker_leaves_no_copy_behind(
    installed_models: Path, tmp_path: Path, scratch: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(8):
        (data / f"in_{i}.txt").write_text("crash" if i in (2, 5) else "x" * i)
    before = snapshot(data)
    proc = run(
        PREDICT, data, "-o", tmp_path / "out", "--model-name", "batch-reader",
        "--workers", "1", site=installed_models, scratch=scratch,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    crashed = [r for r in results(tmp_path / "out") if r["status"] == "error"]
    assert sorted(Path(r["input"]).name for r in crashed) == ["in_2.txt", "in_5.txt"]
    assert snapshot(data) == before
    assert list(scratch.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("action", ["delete", "truncate", "overwrite"])
def test_deepaas_cli_hands_the_model_a_copy(
    installed_models: Path, tmp_path: Path, scratch: Path, action: str
) -> None:
    data = tmp_path / "data"
    before = make_folder(data)
    proc = run(
        CLI, "--model-name", "batch-harmful", "predict", "--data", data / "clip_2.wav",
        "--action", action, site=installed_models, scratch=scratch,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["size"] == len(before["clip_2.wav"])
    assert answer["name"] == "clip_2.wav" and answer["path"].startswith(str(scratch))
    assert answer["path"].endswith(".wav")  # the extension is kept
    assert snapshot(data) == before
    assert list(scratch.iterdir()) == []


@pytest.mark.slow
def test_the_folder_of_a_killed_run_is_removed_by_the_next_run(
    installed_models: Path, tmp_path: Path, scratch: Path
) -> None:
    data = tmp_path / "data"
    before = make_folder(data)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid no process has now
    host = os.uname().nodename
    stale = scratch / f"deepaas-predict-{host}-{gone.pid}-abc123"
    alive = scratch / f"deepaas-predict-{host}-{os.getpid()}-def456"
    elsewhere = scratch / f"deepaas-predict-otherhost-{gone.pid}-ghi789"
    for folder in (stale, alive, elsewhere):
        folder.mkdir()
        (folder / "1-clip_0.wav").write_bytes(b"left behind")
    proc = run(
        PREDICT, data, "-o", tmp_path / "out", "--model-name", "batch-harmful",
        "--workers", "1", site=installed_models, scratch=scratch,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in scratch.iterdir()) == sorted(
        [alive.name, elsewhere.name]
    )
    assert snapshot(data) == before


@pytest.mark.slow
def test_a_cli_call_that_segfaults_leaves_a_folder_the_next_call_removes(
    installed_models: Path, tmp_path: Path, scratch: Path
) -> None:
    data = tmp_path / "data"
    before = make_folder(data)
    crashed = run(
        CLI, "--model-name", "batch-segfault", "predict", "--n", "1",
        "--crash", "true", "--data", data / "clip_0.wav",
        site=installed_models, scratch=scratch,
    )  # fmt: skip
    assert crashed.returncode != 0
    [left] = scratch.iterdir()  # nothing ran after the crash to remove it
    assert left.name.startswith(f"deepaas-cli-{os.uname().nodename}-")
    proc = run(
        CLI, "--model-name", "batch-segfault", "predict", "--n", "2",
        "--data", data / "clip_2.wav", site=installed_models, scratch=scratch,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["size"] == len(before["clip_2.wav"])
    assert list(scratch.iterdir()) == []
    assert snapshot(data) == before


@pytest.mark.parametrize("reflink", [True, False])
def test_a_copy_has_the_same_bytes_its_extension_and_a_name_that_fits(
    tmp_path: Path, reflink: bool
) -> None:
    folder = tmp_path / "copies"
    folder.mkdir()
    source = tmp_path / ("long" * 60 + ".flac")  # 245 characters
    source.write_bytes(bytes(range(256)) * 300)
    copied = copy_for_model(str(source), str(folder), "7", reflink=reflink)
    assert Path(copied).read_bytes() == source.read_bytes()
    assert Path(copied).name == "7.flac"  # too long with the name: shortened
    short = copy_for_model(str(folder / ".." / source.name), str(folder), "8")
    assert Path(short).parent == folder
    with pytest.raises(FileExistsError):  # never overwrites a file
        copy_for_model(str(source), str(folder), "7")
    can_reflink(str(source), str(folder))  # a probe, removed afterwards
    assert sorted(p.name for p in folder.iterdir()) == ["7.flac", "8.flac"]
