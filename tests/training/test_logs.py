"""Writing a training log under its cap; reading it from an offset or its tail."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deepaas.training._logwriter import LogWriter, append_line
from deepaas.training.logs import MAX_CHUNK, read_log
from tests.fake_models.trainers import printed_line

TEXT = b"one\ntwo\nthree\nfour\n"


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "training.log"
    path.write_bytes(TEXT)
    return path


def test_the_whole_log(log):
    assert read_log(log) == (TEXT, len(TEXT), 0)


def test_from_an_offset(log):
    assert read_log(log, offset=4) == (TEXT[4:], len(TEXT), 0)
    assert read_log(log, offset=len(TEXT)) == (b"", len(TEXT), 0)


def test_in_chunks(log):
    data, offset, _ = read_log(log, limit=5)
    assert (data, offset) == (b"one\nt", 5)
    assert read_log(log, offset=offset, limit=100) == (TEXT[5:], len(TEXT), 0)


@pytest.mark.parametrize("lines, expected", [
    (0, b""), (1, b"four\n"), (2, b"three\nfour\n"), (4, TEXT), (10, TEXT),
])
def test_the_tail(log, lines, expected):
    assert read_log(log, tail=lines) == (expected, len(TEXT), 0)


def test_the_tail_without_a_final_newline(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"a\nb\nc")
    assert read_log(path, tail=2) == (b"b\nc", 5, 0)


def test_the_tail_across_blocks(tmp_path):
    path = tmp_path / "log"
    lines = [f"line {n}".encode() * 50 for n in range(2000)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    data, _, _ = read_log(path, tail=700)
    assert data.splitlines() == lines[-700:]


def test_a_log_not_written_yet_is_empty(tmp_path):
    assert read_log(tmp_path / "missing", tail=3) == (b"", 0, 0)
    assert read_log(tmp_path / "missing") == (b"", 0, 0)


@pytest.mark.parametrize("kwargs, message", [
    ({"offset": 1, "tail": 1}, "not both"),
    ({"offset": -1}, ">= 0"),
    ({"tail": -2}, ">= 0"),
    ({"offset": 100}, "past the end of the log"),
])
def test_bad_queries(log, kwargs, message):
    with pytest.raises(ValueError, match=message):
        read_log(log, **kwargs)


# -- the cap (--train-log-max-bytes) --------------------------------------------

CAP = 16 * 1024
MARKER = re.compile(rb"\[deepaas: (\d+) bytes of output dropped here[^\n]*\n")


def stream(lines: int) -> bytes:
    return "".join(printed_line(n) for n in range(lines)).encode()


def write_in_pieces(writer: LogWriter, data: bytes, piece: int = 1000) -> None:
    """Write as a pipe delivers: pieces that do not follow line ends."""
    for start in range(0, len(data), piece):
        writer.write(data[start:start + piece])


def read_all(path: Path, limit: int = MAX_CHUNK) -> tuple[bytes, int, int]:
    """The whole log through offsets, as a client reads it in chunks."""
    text, offset = b"", 0
    while True:
        data, next_offset, dropped = read_log(path, offset=offset, limit=limit)
        text += data
        if next_offset == offset:
            return text, offset, dropped
        offset = next_offset


def test_an_uncapped_log_keeps_everything(tmp_path):
    path = tmp_path / "training.log"
    writer = LogWriter(path, 0)
    write_in_pieces(writer, stream(1000))
    writer.close()
    assert path.read_bytes() == stream(1000)
    assert read_log(path) == (stream(1000), len(stream(1000)), 0)


@pytest.mark.parametrize("limit", [MAX_CHUNK, 1000, 50])
def test_a_capped_log_keeps_its_start_and_its_end(tmp_path, limit):
    path = tmp_path / "training.log"
    data = stream(3000)  # 216 000 bytes, thirteen times the cap
    writer = LogWriter(path, CAP)
    write_in_pieces(writer, data)
    writer.close()
    assert path.stat().st_size <= CAP

    text, total, dropped = read_all(path, limit)
    assert total == len(data)  # offsets count every byte written
    (marker,) = MARKER.finditer(text)
    head, tail = text[:marker.start()], text[marker.end():]
    assert int(marker.group(1)) == dropped == len(data) - len(head) - len(tail)
    assert data.startswith(head) and len(head) >= CAP // 2 - 4096
    assert data.endswith(tail) and len(tail) >= CAP // 4 - 4096
    # Both parts are whole lines; the marker has a line of its own.
    assert head.endswith(b"\n") and tail.startswith(b"line ")
    assert read_log(path).data == text


def test_a_follower_never_goes_backwards_and_sees_where_text_was_dropped(tmp_path):
    path = tmp_path / "training.log"
    data = stream(3000)
    writer = LogWriter(path, CAP)
    offset, markers, seen = 0, 0, 0
    for start in range(0, len(data), 7000):
        writer.write(data[start:start + 7000])
        chunk = read_log(path, offset=offset)
        assert chunk.next_offset >= offset
        body = chunk.data
        marker = MARKER.match(body)
        if marker:
            # What it asked for was dropped: the marker says how much.
            markers += 1
            body = body[marker.end():]
            skipped = chunk.next_offset - len(body) - offset
            assert int(marker.group(1)) == skipped > 0
            offset += skipped
        assert body == data[offset:chunk.next_offset]
        seen += len(body)
        offset = chunk.next_offset
    writer.close()
    assert offset == len(data)
    assert markers > 0 and seen < len(data)


def test_an_offset_in_the_dropped_part_answers_a_marker_then_the_tail(tmp_path):
    path = tmp_path / "training.log"
    data = stream(1000)
    writer = LogWriter(path, CAP)
    writer.write(data)
    writer.close()
    layout_head = len(MARKER.split(path.read_bytes())[0])
    chunk = read_log(path, offset=layout_head + 10)
    marker = MARKER.match(chunk.data)
    assert marker is not None
    assert int(marker.group(1)) == chunk.dropped - 10
    assert data.endswith(chunk.data[marker.end():])
    assert chunk.next_offset == len(data)
    with pytest.raises(ValueError, match=f"past the end of the log \\({len(data)} "):
        read_log(path, offset=len(data) + 1)


def test_the_tail_of_a_capped_log(tmp_path):
    path = tmp_path / "training.log"
    writer = LogWriter(path, CAP)
    writer.write(stream(1000))
    writer.close()
    chunk = read_log(path, tail=3)
    assert chunk.data.decode() == "".join(printed_line(n) for n in (997, 998, 999))
    assert chunk.next_offset == len(stream(1000))


def test_a_writer_takes_over_a_log_another_one_capped(tmp_path):
    path = tmp_path / "training.log"
    data = stream(2000)
    first = LogWriter(path, CAP)
    first.write(data[:50_000])
    first.close()
    second = LogWriter(path, CAP)
    write_in_pieces(second, data[50_000:])
    second.close()
    text, total, dropped = read_all(path)
    assert total == len(data)
    assert len(MARKER.findall(text)) == 1
    assert path.stat().st_size <= CAP
    head, tail = MARKER.split(text)[0], MARKER.split(text)[-1]
    assert data.startswith(head) and data.endswith(tail)


def test_a_server_line_starts_on_a_line_of_its_own(tmp_path):
    path = tmp_path / "training.log"
    writer = LogWriter(path, CAP)
    writer.write(b"progress 50%")
    writer.write_line("stopping (cancel)")
    writer.write_line("training ended: cancelled")
    writer.close()
    lines = path.read_text().splitlines()
    assert lines[0] == "progress 50%"
    assert lines[1].endswith("INFO deepaas: stopping (cancel)")
    assert lines[2].endswith("INFO deepaas: training ended: cancelled")
    append_line(path, CAP, "interrupted")
    assert path.read_text().endswith("INFO deepaas: interrupted\n")


@pytest.mark.parametrize("cap", [1, 16383, -5])
def test_a_cap_too_small_is_refused(tmp_path, cap):
    with pytest.raises(ValueError, match=f"--train-log-max-bytes must be 0 .* "
                                         f"\\(got {cap}\\)"):
        LogWriter(tmp_path / "log", cap)
