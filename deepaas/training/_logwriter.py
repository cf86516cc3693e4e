"""Writing a training's log under a size cap: its start and its end are kept.

The training process writes to a pipe (file descriptors 1 and 2, so output
of C code and of child processes goes there too); a :class:`LogPump` thread
of the server copies the pipe into the log through a :class:`LogWriter`,
which also writes the server's own ``deepaas:`` lines, so that one writer
orders everything.  The pump runs in the server, not in the training
process, so a model that holds the GIL while it prints cannot stall it.

When the log would pass ``max_bytes``, the writer keeps its first half (the
head, cut at a line end), writes a marker line with the number of bytes left
out, and keeps the most recent output after it (at least a quarter of the
cap, starting at a line).  The new file replaces the old one atomically, so
a reader, in this process or another, sees one form or the other (see
:mod:`deepaas.training.logs` for how offsets stay valid across a cut).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
from pathlib import Path

from deepaas.training.logs import cut_file, marker_line, read_layout
from deepaas.training.settings import check_max_bytes
from deepaas.training.store import write_private

LOG = logging.getLogger(__name__)

#: How long the output of a finished training may take to reach its log.
DRAIN_SECONDS = 2.0

_READ = 64 * 1024
#: How far a cut may move to fall on a line end.
_LINE_WINDOW = 4096


class LogWriter:
    """Appends to a training's log and keeps it within ``max_bytes`` (0: no cap).

    Thread-safe.  The file is opened on the first write and its state (size,
    cut) read from it then, so a writer may take over a log that another
    process wrote.
    """

    def __init__(self, path: Path, max_bytes: int = 0) -> None:
        check_max_bytes(max_bytes)
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._last = b"\n"
        self._head: int | None = None
        self._marker = 0
        self._dropped = 0
        self._failed = False

    def write(self, data: bytes) -> None:
        """Append ``data`` (the training's output), cutting the log if needed."""
        if data:
            with self._lock:
                self._write(data)

    def write_line(self, message: str) -> None:
        """Append a line of the server's, on a line of its own."""
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        line = f"{stamp} INFO deepaas: {message}\n".encode()
        with self._lock:
            self._write(line, own_line=True)

    def close(self) -> None:
        """Close the file; a later write opens it again."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _open(self) -> None:
        if self._fd is not None:
            return
        # 0600: a training's output is its owner's only (docs/security.md).
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._fd = fd
        self._size = os.fstat(fd).st_size
        self._head, self._marker, self._dropped = None, 0, 0
        self._last = b"\n"
        with open(self.path, "rb") as handle:
            if self._size:
                handle.seek(self._size - 1)
                self._last = handle.read(1) or b"\n"
            layout = read_layout(handle, self.path)
        if layout is not None:
            self._head, self._marker, self._dropped = layout

    def _write(self, data: bytes, *, own_line: bool = False) -> None:
        try:
            self._open()
            assert self._fd is not None
            if own_line and self._last != b"\n":
                data = b"\n" + data
            if self.max_bytes and self._size + len(data) > self.max_bytes:
                self._cut(data)
            else:
                os.write(self._fd, data)
                self._size += len(data)
            self._last = data[-1:]
            self._failed = False
        except OSError as exc:
            # A full disk must not stall the training: its output is dropped.
            if not self._failed:
                LOG.warning(
                    "could not write to the training log %s: %s", self.path, exc
                )
            self._failed = True

    def _cut(self, data: bytes) -> None:
        """Rewrite the log as head, marker and the newest output (with ``data``)."""
        with open(self.path, "rb") as handle:
            if self._head is None:
                whole = handle.read() + data
                self._head = _line_end_before(whole, self.max_bytes // 2)
                head, rest = whole[: self._head], whole[self._head :]
                _replace(
                    cut_file(self.path), json.dumps({"head_bytes": self._head}).encode()
                )
            else:
                head = handle.read(self._head)
                handle.seek(self._head + self._marker)
                rest = handle.read() + data
        drop = _line_start_after(rest, max(0, len(rest) - self.max_bytes // 4))
        self._dropped += drop
        marker = marker_line(self._dropped, newline_first=not head.endswith(b"\n"))
        kept = rest[drop:]
        _replace(self.path, head + marker + kept)
        assert self._fd is not None
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._marker = len(marker)
        self._size = len(head) + len(marker) + len(kept)


def append_line(path: Path, max_bytes: int, message: str) -> None:
    """Add a line of the server's to a log that nothing else writes now."""
    writer = LogWriter(path, max_bytes)
    writer.write_line(message)
    writer.close()


def _line_end_before(data: bytes, limit: int) -> int:
    """Where to end a head of at most ``limit`` bytes: after a newline if near."""
    index = data.rfind(b"\n", max(0, limit - _LINE_WINDOW), limit)
    return index + 1 if index >= 0 else limit


def _line_start_after(data: bytes, start: int) -> int:
    """Where to begin the kept tail, at or after ``start``: at a line if near."""
    if start == 0:
        return 0
    if data[start - 1 : start] == b"\n":
        return start
    index = data.find(b"\n", start, start + _LINE_WINDOW)
    return index + 1 if 0 <= index < len(data) - 1 else start


def _replace(path: Path, data: bytes) -> None:
    write_private(path, data)  # 0600, as the log it replaces


class LogPump:
    """Copies a training's output from the pipe ``fd`` into its log, in a thread.

    The pump owns ``fd`` and closes it at end of file, when every process
    that held the pipe's writing end is gone.  A process that outlives its
    training (in a session of its own) keeps the pump going: what it writes
    still reaches the log, after the training's closing line, under the cap.
    """

    def __init__(self, fd: int, writer: LogWriter, *, name: str) -> None:
        self.writer = writer
        self._fd = fd
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start copying."""
        self._thread.start()

    def finish(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for end of file; answer whether it came.

        Without it, the pump goes on for as long as this process lives.
        """
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            while data := os.read(self._fd, _READ):
                self.writer.write(data)
        except OSError as exc:
            LOG.warning("reading a training's output failed: %s", exc)
        finally:
            os.close(self._fd)
