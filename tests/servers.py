"""A real ``deepaas-run`` for tests: started, waited for, asked, stopped.

Tests that need the server a user starts (its announce line, signals, its
sockets, its state directory across restarts) run the console script as a
subprocess through :class:`RunningServer` rather than each starting and
waiting for it its own way.  The server binds its port at once but listens
only once it answers (connections are refused until then), so a test waits
for the "serving ... on URL" line (:meth:`RunningServer.wait_serving`) or
for the port to accept a connection (:meth:`RunningServer.wait_accepting`),
never for the port to be bound.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.conftest import subprocess_env

#: The line deepaas-run prints on stdout once it answers; ``url`` is the
#: origin (scheme, host, port), without the ``--base-path`` that may follow.
SERVING = re.compile(r"serving (?P<models>.+) on (?P<url>http://[^/\s]+)")
#: ``python -m deepaas.cmd.run``: the console script without its wrapper.
DEEPAAS_RUN = (sys.executable, "-m", "deepaas.cmd.run")


def free_port() -> int:
    """A loopback port nothing listens on now (for a server given a fixed port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a connection to ``port`` is accepted now (refused: not listening)."""
    try:
        socket.create_connection((host, port), timeout=1).close()
    except ConnectionRefusedError:
        return False
    return True


class RunningServer:
    """A ``deepaas-run`` subprocess; ``url`` is its origin once announced.

    ``port`` 0 lets the server pick a free one (read from its announce line);
    None leaves ``--listen-port`` to ``args`` or to the default.  ``popen``
    are further :class:`subprocess.Popen` options (a session of its own, a
    ``preexec_fn`` that lowers a limit).  Its stdout is read line by line into
    ``output`` (the announce line sets ``url`` and ``models``); its stderr,
    the log, goes to the file ``log``.  Used as a context manager, or closed
    by the ``start_server`` fixture, it is always killed and reaped at the
    end, whatever the test did.

    Example::

        with RunningServer("--model-name", "echo", log=tmp_path / "log") as server:
            server.wait_serving()
            assert server.get("/v2/models/")[0] == 200
            assert server.terminate() == 0
    """

    def __init__(
        self,
        *args: str,
        log: Path,
        env: dict[str, str] | None = None,
        port: int | None = 0,
        command: Sequence[str] = DEEPAAS_RUN,
        **popen: Any,
    ) -> None:
        self.log = log
        self.port = port
        self._err = open(log, "wb")
        listen = () if port is None else ("--listen-port", str(port))
        launched = [*command, *listen, *args]
        try:
            self.process = subprocess.Popen(
                launched, stdout=subprocess.PIPE, stderr=self._err, text=True,
                env=subprocess_env() if env is None else env, **popen,
            )  # fmt: skip
        except BaseException:
            self._err.close()
            raise
        self.launched = time.monotonic()
        self.output: list[str] = []
        self.url = ""
        self.models = ""
        self._served = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            match = SERVING.search(line)
            if match and not self.url:
                self.url, self.models = match["url"], match["models"]
                self._served.set()
        self._served.set()  # stdout closed: the server has ended

    def wait_serving(self, timeout: float = 60) -> str:
        """Wait for the announce line and answer the URL it names.

        Fails, with the server's log, when it ends or ``timeout`` passes first.
        """
        if not self._served.wait(timeout):
            raise AssertionError(
                f"deepaas-run did not announce itself within {timeout:g} s; "
                f"its log:\n{self.stderr()}"
            )
        if not self.url:
            self.process.wait(30)
            raise AssertionError(
                f"deepaas-run exited with status {self.process.returncode} "
                f"before serving; its log:\n{self.stderr()}"
            )
        return self.url

    def wait_accepting(self, timeout: float = 60, interval: float = 0.02) -> None:
        """Wait until the fixed ``port`` accepts connections (before warm models).

        Fails, with the server's log, when it ends or ``timeout`` passes first.
        """
        assert self.port, "wait_accepting needs a server started with a fixed port"
        deadline = self.launched + timeout
        while not port_accepts(self.port):
            if self.process.poll() is not None:
                raise AssertionError(
                    f"deepaas-run exited with status {self.process.returncode} "
                    f"before accepting connections; its log:\n{self.stderr()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"port {self.port} accepted no connection within "
                    f"{timeout:g} s; the server's log:\n{self.stderr()}"
                )
            time.sleep(interval)

    def stdout(self) -> str:
        """What the server printed on stdout so far."""
        return "".join(self.output)

    def stderr(self) -> str:
        """The server's log (its stderr) so far."""
        if not self._err.closed:
            self._err.flush()
        return self.log.read_text(errors="replace")

    def request(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> tuple[int, str, bytes]:
        """Status, content type and body of one request; HTTP errors answer too."""
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return resp.status, resp.headers["Content-Type"], resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["Content-Type"], exc.read()

    def get(self, path: str) -> tuple[int, Any]:
        """Status and JSON body of ``GET path``."""
        status, _, body = self.request("GET", path)
        return status, json.loads(body)

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """Status and JSON body of ``POST path`` with a JSON ``body``."""
        status, _, answer = self.request(
            "POST", path, data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        return status, json.loads(answer)

    def terminate(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``signum`` (SIGTERM: a clean stop) and answer the exit status."""
        self.process.send_signal(signum)
        return self.process.wait(timeout)

    def wait(self, timeout: float = 60) -> int:
        """Wait for the server to end by itself (refusing to start): its status."""
        return self.process.wait(timeout)

    def kill(self) -> int:
        """SIGKILL the server (no clean-up of its own) and answer the exit status."""
        return self.terminate(signal.SIGKILL)

    def close(self) -> None:
        """Kill the server if it still runs, reap it and close its log."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(10)
        self._err.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
