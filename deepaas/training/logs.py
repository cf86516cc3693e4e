"""Reading a training's log: all of it, from a byte offset on, or its tail."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

#: The most bytes one answer carries; a client follows with the next offset.
MAX_CHUNK = 4 * 1024 * 1024
_BLOCK = 64 * 1024


def read_log(
    path: Path, *, offset: int | None = None, tail: int | None = None,
    limit: int = MAX_CHUNK,
) -> tuple[bytes, int]:
    """Answer ``(text, next_offset)`` of the log at ``path``.

    With ``offset``, the bytes from there on; with ``tail``, the last N
    lines; with neither, the log from its start.  At most ``limit`` bytes
    are read; ``next_offset`` is where to continue.  A log not written yet
    reads as empty.
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
        return b"", 0
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if tail is not None:
            start = _tail_start(handle, size, tail)
            if size - start > limit:
                start = size - limit
        else:
            start = offset or 0
            if start > size:
                raise ValueError(
                    f"offset {start} is past the end of the log ({size} bytes)"
                )
        handle.seek(start)
        data = handle.read(min(limit, size - start))
    return data, start + len(data)


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
