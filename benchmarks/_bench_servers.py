"""Starting, checking, measuring and always stopping the servers under test.

Every server runs in its own session (process group), so stopping it stops
its workers too; :class:`ServerSet` stops whatever it started on any exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children = _children_map()
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and its descendants."""
    ticks = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return ticks / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time all cores spent busy since boot (from /proc/stat)."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def _status_kb(pid: int, path: str, key: str) -> int:
    try:
        with open(f"/proc/{pid}/{path}") as handle:
            for line in handle:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_memory_mb(pid: int, *, pss: bool = False) -> float:
    """Sum of RSS (or PSS) of a process and its descendants, in MB."""
    if pss:
        kb = sum(_status_kb(p, "smaps_rollup", "Pss:") for p in process_tree(pid))
    else:
        kb = sum(_status_kb(p, "status", "VmRSS:") for p in process_tree(pid))
    return kb / 1024


@dataclasses.dataclass
class Server:
    """One server under test: how to start it and where to send requests."""

    label: str
    settings: str
    command: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    predict_path: str
    log: Path
    process: subprocess.Popen[bytes] | None = None
    #: Sent with every request, e.g. ``Authorization`` for a token.
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return self.base + self.predict_path

    def start(self, cwd: Path) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                self.command, env=self.env, cwd=cwd, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited with {self.process.returncode} while "
                    f"starting:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.base + self.ready_path, timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise RuntimeError(f"{self.label} not ready after {timeout:g} s:\n"
                           f"{self.log_tail()}")

    def post(self, body: bytes, content_type: str) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.url, data=body, method="POST",
            headers={"Content-Type": content_type, "Accept": "application/json",
                     **self.headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid) if self.process else 0.0

    def memory_mb(self, *, pss: bool = False) -> float:
        return tree_memory_mb(self.process.pid, pss=pss) if self.process else 0.0

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        # Sweep the group even when the leader left: workers must not linger.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)


def end_process(
    process: subprocess.Popen[bytes], signum: int = signal.SIGTERM, timeout: float = 60
) -> None:
    """Ask ``process`` to stop with ``signum``; kill it if it has not in time."""
    process.send_signal(signum)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ServerSet:
    """Servers started together and always stopped together."""

    def __init__(self, servers: list[Server], cwd: Path) -> None:
        self.servers = servers
        self.cwd = cwd

    def __enter__(self) -> list[Server]:
        try:
            for server in self.servers:
                server.start(self.cwd)
            for server in self.servers:
                server.wait_ready(timeout=300)
        except BaseException:
            self.stop()
            raise
        return self.servers

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
