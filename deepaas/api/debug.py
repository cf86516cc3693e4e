"""GET /debug/: what the server printed and logged, when switched on."""

from __future__ import annotations

import collections
import io
import logging
import sys
import threading
from typing import TextIO

from aiohttp import web

from deepaas.api.keys import DEBUG_CAPTURE
from deepaas.api.routing import add_route


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
    """Keeps the last lines of stdout, stderr and the log in memory."""

    def __init__(self, max_lines: int = 5000) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._lines: collections.deque[str] = collections.deque(maxlen=max_lines)
        self._guard = threading.Lock()
        self._saved: tuple[TextIO, TextIO] | None = None

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
        """Start capturing stdout, stderr and the root logger."""
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = _Tee(sys.stdout, self, "stdout")  # type: ignore[assignment]
        sys.stderr = _Tee(sys.stderr, self, "stderr")  # type: ignore[assignment]
        logging.getLogger().addHandler(self)

    def uninstall(self) -> None:
        """Stop capturing and restore the streams."""
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
            self._saved = None
        logging.getLogger().removeHandler(self)

    def text(self) -> str:
        with self._guard:
            return "\n".join(self._lines) + ("\n" if self._lines else "")


async def debug(request: web.Request) -> web.Response:
    capture = request.app.get(DEBUG_CAPTURE)
    if capture is None:
        return web.Response(status=204)
    return web.Response(text=capture.text(), content_type="text/plain")


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/debug/", debug)
