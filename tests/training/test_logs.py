"""Reading a training log from an offset or by its tail."""

from __future__ import annotations

import pytest

from deepaas.training.logs import read_log

TEXT = b"one\ntwo\nthree\nfour\n"


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "training.log"
    path.write_bytes(TEXT)
    return path


def test_the_whole_log(log):
    assert read_log(log) == (TEXT, len(TEXT))


def test_from_an_offset(log):
    assert read_log(log, offset=4) == (TEXT[4:], len(TEXT))
    assert read_log(log, offset=len(TEXT)) == (b"", len(TEXT))


def test_in_chunks(log):
    data, offset = read_log(log, limit=5)
    assert (data, offset) == (b"one\nt", 5)
    assert read_log(log, offset=offset, limit=100) == (TEXT[5:], len(TEXT))


@pytest.mark.parametrize("lines, expected", [
    (0, b""), (1, b"four\n"), (2, b"three\nfour\n"), (4, TEXT), (10, TEXT),
])
def test_the_tail(log, lines, expected):
    assert read_log(log, tail=lines) == (expected, len(TEXT))


def test_the_tail_without_a_final_newline(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"a\nb\nc")
    assert read_log(path, tail=2) == (b"b\nc", 5)


def test_the_tail_across_blocks(tmp_path):
    path = tmp_path / "log"
    lines = [f"line {n}".encode() * 50 for n in range(2000)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    data, _ = read_log(path, tail=700)
    assert data.splitlines() == lines[-700:]


def test_a_log_not_written_yet_is_empty(tmp_path):
    assert read_log(tmp_path / "missing", tail=3) == (b"", 0)
    assert read_log(tmp_path / "missing") == (b"", 0)


@pytest.mark.parametrize("kwargs, message", [
    ({"offset": 1, "tail": 1}, "not both"),
    ({"offset": -1}, ">= 0"),
    ({"tail": -2}, ">= 0"),
    ({"offset": 100}, "past the end of the log"),
])
def test_bad_queries(log, kwargs, message):
    with pytest.raises(ValueError, match=message):
        read_log(log, **kwargs)
