"""What the server prints and logs, kept in memory for GET /debug/.

No aiohttp here: the capture is installed by ``deepaas-run`` before the
application exists, and also collects what worker processes write.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import sys
import threading
from typing import TextIO


class _Tee(io.TextIOBase):
    """Writes to the original stream and to the capture."""

    def __init__(self, original: TextIO, capture: DebugCapture, label: str) -> None:
        self._original = original
        self._capture = capture
        self._label = label

    def write(self, text: str) -> int:
        self._capture.add(self._label, text)
        return self._original.write(text)

    def flush(self) -> None:
        self._original.flush()

    def fileno(self) -> int:
        return self._original.fileno()

    def isatty(self) -> bool:
        return self._original.isatty()


class DebugCapture(logging.Handler):
    """Keeps the last lines of stdout, stderr and the log in memory.

    Python-level writes of this process are caught as they happen.  Worker
    processes (spawned, so they inherit file descriptors 1 and 2, not
    ``sys.stdout``) write to pipes put in place of those descriptors; a
    thread copies what comes through to the original streams and into the
    capture, so a model's output in a worker shows up at /debug/ too.
    """

    def __init__(self, max_lines: int = 5000) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._lines: collections.deque[str] = collections.deque(maxlen=max_lines)
        self._guard = threading.Lock()
        self._saved: tuple[TextIO, TextIO] | None = None
        self._saved_fds: list[tuple[int, int]] = []
        self._saved_unbuffered: str | None = None

    def add(self, label: str, text: str) -> None:
        if not text:
            return
        with self._guard:
            for line in text.splitlines():
                if line.strip():
                    self._lines.append(f"[{label}] {line}")

    def emit(self, record: logging.LogRecord) -> None:
        self.add("log", self.format(record))

    def install(self) -> None:
        """Start capturing stdout, stderr (this process and its children) and
        the root logger."""
        self._saved = (sys.stdout, sys.stderr)
        originals = []
        for fd, stream, label in ((1, sys.stdout, "stdout"), (2, sys.stderr, "stderr")):
            stream.flush()
            original = os.dup(fd)
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            self._saved_fds.append((fd, original))
            threading.Thread(target=self._pump, args=(read_end, original, label),
                             name=f"deepaas-debug-{label}", daemon=True).start()
            originals.append(io.TextIOWrapper(
                io.FileIO(original, "w", closefd=False),
                encoding=getattr(stream, "encoding", None) or "utf-8",
                errors="backslashreplace", line_buffering=True,
            ))
        sys.stdout = _Tee(originals[0], self, "stdout")  # type: ignore[assignment]
        sys.stderr = _Tee(originals[1], self, "stderr")  # type: ignore[assignment]
        # Children's output would otherwise wait in their buffers.
        self._saved_unbuffered = os.environ.get("PYTHONUNBUFFERED")
        os.environ["PYTHONUNBUFFERED"] = "1"
        logging.getLogger().addHandler(self)

    def _pump(self, read_end: int, original: int, label: str) -> None:
        pending = b""
        with open(read_end, "rb", buffering=0, closefd=True) as pipe:
            while chunk := pipe.read(65536):
                try:
                    os.write(original, chunk)
                except OSError:
                    pass
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    self.add(label, line.decode("utf-8", "backslashreplace"))
        self.add(label, pending.decode("utf-8", "backslashreplace"))
        os.close(original)  # every writer is gone: uninstall restored ``fd``

    def uninstall(self) -> None:
        """Stop capturing and restore the streams."""
        if self._saved is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = self._saved
            self._saved = None
        for fd, original in self._saved_fds:
            os.dup2(original, fd)  # closes our pipe's write end; the pump ends
        self._saved_fds = []
        if self._saved_unbuffered is None:
            os.environ.pop("PYTHONUNBUFFERED", None)
        else:
            os.environ["PYTHONUNBUFFERED"] = self._saved_unbuffered
        logging.getLogger().removeHandler(self)

    def text(self) -> str:
        with self._guard:
            return "\n".join(self._lines) + ("\n" if self._lines else "")
