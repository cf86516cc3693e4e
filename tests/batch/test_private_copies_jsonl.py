"""Files named in JSON Lines inputs and fixed with ``--arg`` are copies too.

A JSON Lines input names its files by path (relative to the JSON Lines
file's folder), and ``--arg NAME=PATH`` fixes a file argument for every
input: the model gets a copy of each, never the user's file, exactly as
for input files.  Each test runs a model that reads both of its file
arguments and then deletes, truncates, overwrites or moves them, through
the real console scripts, and checks that the user's folders hold the
same files, byte for byte, and nothing else, and that no copy is left in
the temporary folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.batch.test_private_copies import CLI, PREDICT, results, run

pytestmark = pytest.mark.slow


def user_files(folder: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``folder``: a file's bytes, None for a folder.

    A model's ``.moved`` file, or a folder left where the user's files are,
    shows up here as well as a changed file.
    """
    return {
        str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
    }


def make_user_folder(home: Path) -> None:
    """Clips, masks and a JSON Lines file naming some of them, as a user has."""
    (home / "lists" / "clips" / "sub").mkdir(parents=True)
    (home / "masks").mkdir()
    clips = {"a.wav": 1, "b.wav": 2, "sub/c.wav": 3}
    for name, times in clips.items():
        (home / "lists" / "clips" / name).write_bytes(bytes(range(256)) * times)
    (home / "masks" / "default.png").write_bytes(b"default mask " * 7)
    (home / "masks" / "special.png").write_bytes(b"special mask " * 11)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """The temporary folder (TMPDIR) the tools make the model's copies in."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    return folder


def size(home: Path, name: str) -> int:
    return (home / name).stat().st_size


@pytest.mark.parametrize(
    ("action", "workers"),
    [("delete", "1"), ("truncate", "0"), ("overwrite", "1"), ("move", "2")],
)
def test_files_named_in_json_lines_and_a_fixed_file_are_copies(
    installed_models: Path, tmp_path: Path, scratch: Path, action: str, workers: str
) -> None:
    home = tmp_path / "home"
    make_user_folder(home)
    absolute_b = home / "lists" / "clips" / "b.wav"
    lines = [
        {"data": "clips/a.wav"},  # mask: the fixed one
        {"data": "clips/sub/c.wav", "mask": "../masks/special.png"},
        {"data": "clips/a.wav"},  # the same file again, for a later call
        {"data": str(absolute_b)},
        {"data": "clips/b.wav", "mask": "clips/b.wav"},  # one file, both arguments
    ]
    (home / "lists" / "args.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines)
    )
    before = user_files(home)
    out = tmp_path / "out"
    proc = run(
        PREDICT, "--input-jsonl", home / "lists" / "args.jsonl", "-o", out,
        "--model-name", "batch-harmful-pair", "--arg", f"action={action}",
        "--arg", f"mask={home / 'masks' / 'default.png'}", "--workers", workers,
        site=installed_models, scratch=scratch,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert user_files(home) == before
    assert list(scratch.iterdir()) == []  # no copy, no folder left behind
    got = {
        int(r["input"].rsplit(":", 1)[1]): r["output"]["predictions"]
        for r in results(out)
    }
    # what each call read: the whole file, from a copy of its own
    expected = {
        1: ("lists/clips/a.wav", "masks/default.png"),
        2: ("lists/clips/sub/c.wav", "masks/special.png"),
        3: ("lists/clips/a.wav", "masks/default.png"),
        4: ("lists/clips/b.wav", "masks/default.png"),
        5: ("lists/clips/b.wav", "lists/clips/b.wav"),
    }
    assert sorted(got) == sorted(expected)
    paths = set()
    for number, (data, mask) in expected.items():
        answer = got[number]
        assert answer["data"]["name"] == Path(data).name
        assert answer["data"]["size"] == size(home, data)
        assert answer["mask"]["name"] == Path(mask).name
        assert answer["mask"]["size"] == size(home, mask)
        for upload in (answer["data"], answer["mask"]):
            assert upload["path"].startswith(str(scratch))
            paths.add(upload["path"])
    assert len(paths) == 2 * len(expected)  # every file of every call its own copy


@pytest.mark.parametrize(("action", "workers"), [("delete", "0"), ("move", "1")])
def test_a_fixed_file_beside_input_files_is_copied_for_every_input(
    installed_models: Path, tmp_path: Path, scratch: Path, action: str, workers: str
) -> None:
    home = tmp_path / "home"
    make_user_folder(home)
    before = user_files(home)
    out = tmp_path / "out"
    proc = run(
        PREDICT, home / "lists" / "clips", "-o", out,
        "--model-name", "batch-harmful-pair", "--file-arg", "data",
        "--arg", f"mask={home / 'masks' / 'default.png'}",
        "--arg", f"action={action}", "--workers", workers,
        site=installed_models, scratch=scratch,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert user_files(home) == before
    assert list(scratch.iterdir()) == []
    got = {Path(r["input"]).name: r["output"]["predictions"] for r in results(out)}
    assert sorted(got) == ["a.wav", "b.wav", "c.wav"]
    masks = {answer["mask"]["path"] for answer in got.values()}
    assert len(masks) == 3 and all(m.startswith(str(scratch)) for m in masks)
    for answer in got.values():  # each input read the whole mask
        assert answer["mask"]["size"] == size(home, "masks/default.png")


@pytest.mark.parametrize(("action", "same_file"), [("move", False), ("delete", True)])
def test_deepaas_cli_copies_each_file_argument(
    installed_models: Path, tmp_path: Path, scratch: Path, action: str, same_file: bool
) -> None:
    home = tmp_path / "home"
    make_user_folder(home)
    before = user_files(home)
    data = home / "lists" / "clips" / "sub" / "c.wav"
    mask = data if same_file else home / "masks" / "special.png"
    proc = run(
        CLI, "--model-name", "batch-harmful-pair", "predict", "--data", data,
        "--mask", mask, "--action", action, site=installed_models, scratch=scratch,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["data"]["size"] == data.stat().st_size
    assert answer["mask"]["size"] == mask.stat().st_size
    assert answer["data"]["path"] != answer["mask"]["path"]
    for upload in (answer["data"], answer["mask"]):
        assert upload["path"].startswith(str(scratch))
    assert user_files(home) == before
    assert list(scratch.iterdir()) == []
