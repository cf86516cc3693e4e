"""Reading a training's log: all of it, from an offset on, or its tail.

A log is capped (``--train-log-max-bytes``, see :mod:`._logwriter`): once it
would grow past the cap, it keeps its first part (the head), then a marker
line that says how many bytes were dropped there, then the most recent
output (the tail).  A capped log carries a small side file,
``training.log.cut``, that records where its head ends.

Offsets are *logical*: byte ``N`` is the ``N``-th byte the training ever
wrote, dropped bytes included, so an offset never goes backwards for a
client following a log, however much is dropped meanwhile.  A client that
asks for text that was dropped gets a marker line saying how much of what it
asked for is gone, then what is kept.  The marker line itself is not part of
the logical text.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import BinaryIO, NamedTuple

#: The most bytes one answer carries; a client follows with the next offset.
MAX_CHUNK = 4 * 1024 * 1024
_BLOCK = 64 * 1024

#: Beside a capped log: ``{"head_bytes": N}``, where its head ends.
CUT_SUFFIX = ".cut"

_MARKER = re.compile(rb"\n?\[deepaas: (\d+) bytes of output dropped here[^\n]*\n")
_MARKER_MAX = 256


def marker_line(dropped: int, *, newline_first: bool = False) -> bytes:
    """The line that stands where ``dropped`` bytes of a log were left out."""
    text = (
        f"[deepaas: {dropped} bytes of output dropped here (the log keeps "
        "its start and its end within --train-log-max-bytes)]\n"
    )
    return (b"\n" if newline_first else b"") + text.encode()


class LogLayout(NamedTuple):
    """Where a capped log's parts lie in its file."""

    head: int  # bytes of the head (logical and physical offsets agree there)
    marker: int  # length of the marker line that follows the head
    dropped: int  # bytes left out at the marker

    @property
    def tail_start(self) -> int:
        """The file offset where the kept tail begins."""
        return self.head + self.marker

    def logical(self, position: int) -> int:
        """The logical offset of file offset ``position`` (not in the marker)."""
        if position <= self.head:
            return position
        return position - self.marker + self.dropped


class LogChunk(NamedTuple):
    """A part of a log, as the logs endpoint answers it."""

    data: bytes
    next_offset: int  # the logical offset to ask for next
    dropped: int  # bytes dropped from the middle of the log so far


def cut_file(path: Path) -> Path:
    """The side file that records where the head of the log ``path`` ends."""
    return path.with_name(path.name + CUT_SUFFIX)


def read_layout(handle: BinaryIO, path: Path) -> LogLayout | None:
    """The layout of the open log ``handle`` at ``path``; None when uncut.

    The side file is read after the log was opened: a log replaced by its cut
    form after that still reads as the uncut file that was opened.
    """
    try:
        head = int(json.loads(cut_file(path).read_text("utf-8"))["head_bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    handle.seek(head)
    match = _MARKER.match(handle.read(_MARKER_MAX))
    if match is None:
        return None
    return LogLayout(head, match.end(), int(match.group(1)))


def read_log(
    path: Path,
    *,
    offset: int | None = None,
    tail: int | None = None,
    limit: int = MAX_CHUNK,
) -> LogChunk:
    """Answer a part of the log at ``path`` and the logical offset to read next.

    With ``offset``, the text from that logical offset on; with ``tail``, the
    last N lines; with neither, the log from its start.  At most ``limit``
    bytes are read.  A log not written yet reads as empty.
    """
    if offset is not None and tail is not None:
        raise ValueError("give either offset or tail, not both")
    if (offset is not None and offset < 0) or (tail is not None and tail < 0):
        raise ValueError("offset and tail must be >= 0")
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        if offset:
            raise ValueError(
                f"offset {offset} is past the end of the log (0 bytes)"
            ) from None
        return LogChunk(b"", 0, 0)
    with handle:
        size = os.fstat(handle.fileno()).st_size
        layout = read_layout(handle, path)
        if layout is None:
            layout = LogLayout(size, 0, 0)
        total = layout.logical(size)
        prefix = b""
        if tail is not None:
            start = _tail_start(handle, size, tail)
            start = max(start, size - limit)
        else:
            wanted = offset or 0
            if wanted > total:
                raise ValueError(
                    f"offset {wanted} is past the end of the log ({total} bytes)"
                )
            if wanted <= layout.head:
                start = wanted
            elif wanted < layout.head + layout.dropped:
                start = layout.tail_start
                prefix = marker_line(layout.head + layout.dropped - wanted)
            else:
                start = layout.tail_start + wanted - layout.head - layout.dropped
        handle.seek(start)
        data = handle.read(max(0, min(limit - len(prefix), size - start)))
        end = start + len(data)
        if layout.head < end < layout.tail_start:
            # Never end inside the marker: stop before it, or take all of it.
            if start < layout.head:
                data = data[: layout.head - start]
                end = layout.head
            else:
                data += handle.read(layout.tail_start - end)
                end = layout.tail_start
    return LogChunk(prefix + data, layout.logical(end), layout.dropped)


def _tail_start(handle: BinaryIO, size: int, lines: int) -> int:
    """Where the last ``lines`` lines of the file begin."""
    if lines == 0:
        return size
    end = size
    # A final newline ends the last line; it does not start another one.
    if size:
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            end = size - 1
    position = end
    found = 0
    while position > 0:
        step = min(_BLOCK, position)
        position -= step
        handle.seek(position)
        block = handle.read(step)
        index = len(block)
        while True:
            index = block.rfind(b"\n", 0, index)
            if index < 0:
                break
            found += 1
            if found == lines:
                return position + index + 1
    return 0
