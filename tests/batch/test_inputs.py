"""Finding inputs: directories, patterns, globs, @lists, and what is skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deepaas.batch import InputError, collect_files


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in [
        "a/1.wav",
        "a/2.txt",
        "a/deep/3.wav",
        "b/4.wav",
        "a/.hidden.wav",
        ".git/5.wav",
        "out/6.wav",
    ]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    return tmp_path


def test_directories_are_walked_recursively_and_filtered_by_pattern(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree)
    found = collect_files(["a", "b"], patterns=["*.wav"])
    assert [os.path.relpath(p) for p in found.paths] == [
        "a/1.wav",
        "a/deep/3.wav",
        "b/4.wav",
    ]
    assert all(os.path.isabs(p) for p in found.paths)


def test_hidden_files_and_the_output_folder_are_skipped(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree)
    found = collect_files(["."], exclude_dirs=["out"])
    assert [os.path.relpath(p) for p in found.paths] == [
        "a/1.wav",
        "a/2.txt",
        "a/deep/3.wav",
        "b/4.wav",
    ]


def test_globs_lists_and_duplicates(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree)
    (tree / "list.txt").write_text("# my inputs\na/2.txt\n\nb/4.wav\na/2.txt\n")
    found = collect_files(["@list.txt", "a/*.wav", "a/**/3.wav", "b/4.wav"])
    assert [os.path.relpath(p) for p in found.paths] == [
        "a/1.wav",
        "a/2.txt",
        "a/deep/3.wav",
        "b/4.wav",
    ]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("nope.wav", "does not exist"),
        ("nope/*.wav", "no file matches"),
        ("@nolist.txt", "cannot read the input list"),
    ],
)
def test_missing_inputs_are_named(
    tree: Path, monkeypatch: pytest.MonkeyPatch, source: str, message: str
) -> None:
    monkeypatch.chdir(tree)
    with pytest.raises(InputError, match=message):
        collect_files([source])
