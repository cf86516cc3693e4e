"""deepaas-run in front of clients that misbehave: slow, numerous, or cut off.

A real ``deepaas-run`` on loopback, reached with raw sockets, as a client on
a real network would: half-sent requests are answered 408 and closed after
``--header-timeout``, a body that stops arriving after ``--body-timeout``,
connections beyond ``--max-connections`` get 503 at once, and SIGTERM
answers every request in progress (503 past ``--shutdown-timeout``) and
exits soon after.
"""

from __future__ import annotations

import json
import resource
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from deepaas.cmd.run import SHUTDOWN_MARGIN
from tests.conftest import FAKE_MODELS, subprocess_env, write_distribution
from tests.servers import RunningServer

pytestmark = pytest.mark.slow

HOST = b"Host: 127.0.0.1\r\n"
CLOSE = b"Connection: close\r\n\r\n"


def address(server: RunningServer) -> tuple[str, int]:
    parts = urlsplit(server.url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def read_answer(conn: socket.socket, timeout: float = 10) -> tuple[int, dict, bytes]:
    """Status, headers (lower-case names) and body of one answer; then EOF."""
    conn.settimeout(timeout)
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def get_health(server: RunningServer) -> int:
    """The status of GET /health on a new connection (0: reset)."""
    try:
        with socket.create_connection(address(server), timeout=10) as conn:
            conn.sendall(
                b"GET /health HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n"
            )
            return read_answer(conn)[0]
    except ConnectionResetError:
        return 0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_distribution(tmp_path_factory.mktemp("site"), FAKE_MODELS)


@pytest.fixture(scope="module")
def server(
    site: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One server with short timeouts and a small connection bound."""
    state = tmp_path_factory.mktemp("state")
    started = RunningServer(
        "--model-name", "echo", "--workers", "0",
        "--header-timeout", "1", "--body-timeout", "1", "--max-connections", "8",
        env=subprocess_env(site, XDG_STATE_HOME=str(state)),
        log=state / "stderr.log",
    )
    started.wait_serving()
    yield started
    started.close()


def test_a_half_sent_request_is_answered_408_and_closed(server: RunningServer) -> None:
    conns = []
    for _ in range(5):
        conn = socket.create_connection(address(server), timeout=10)
        conn.sendall(b"GET /health HTTP/1.1\r\n" + HOST + b"X-Slow: ")
        conns.append(conn)
    started = time.monotonic()
    for conn in conns:
        status, headers, body = read_answer(conn)
        conn.close()
        assert status == 408
        assert headers["content-type"].startswith("application/json")
        assert "--header-timeout" in json.loads(body)["message"]
    assert time.monotonic() - started < 5
    assert get_health(server) == 200


def test_a_connection_that_sends_nothing_is_closed(server: RunningServer) -> None:
    with socket.create_connection(address(server), timeout=10) as conn:
        started = time.monotonic()
        status, _, _ = read_answer(conn)
    assert status == 408
    assert time.monotonic() - started < 5


def test_a_body_that_stops_arriving_is_answered_408(server: RunningServer) -> None:
    with socket.create_connection(address(server), timeout=10) as conn:
        conn.sendall(
            b"POST /v2/models/echo/predict/ HTTP/1.1\r\n" + HOST
            + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            + b'{"value": "'
        )
        started = time.monotonic()
        status, headers, body = read_answer(conn)
    assert status == 408, body
    assert "--body-timeout" in json.loads(body)["message"]
    assert time.monotonic() - started < 5
    assert get_health(server) == 200


def test_a_body_that_keeps_arriving_slowly_is_read(server: RunningServer) -> None:
    body = b'{"value": "' + b"x" * 10 + b'"}'
    with socket.create_connection(address(server), timeout=10) as conn:
        conn.sendall(
            b"POST /v2/models/echo/predict/ HTTP/1.1\r\n" + HOST
            + b"Content-Type: application/json\r\nConnection: close\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body)
        )
        for byte in range(len(body)):  # 2.3 s in all, never 1 s without data
            conn.sendall(body[byte : byte + 1])
            time.sleep(0.1)
        status, _, answer = read_answer(conn)
    assert status == 200, answer
    assert json.loads(answer)["predictions"] == "x" * 10


def test_connections_beyond_the_bound_get_503_at_once(server: RunningServer) -> None:
    held = [socket.create_connection(address(server), timeout=10) for _ in range(8)]
    try:
        # The server counts a connection once it has accepted it.
        time.sleep(0.3)
        with socket.create_connection(address(server), timeout=10) as extra:
            started = time.monotonic()
            status, headers, body = read_answer(extra, timeout=3)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert "--max-connections" in json.loads(body)["message"]
        assert time.monotonic() - started < 1
    finally:
        for conn in held:
            conn.close()
    deadline = time.monotonic() + 5
    while get_health(server) != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert get_health(server) == 200
    assert "connections refused" in server.stderr()  # said once, with a count


@pytest.mark.parametrize(
    "request_line",
    [b"OPTIONS * HTTP/1.1\r\n", b"CONNECT example.org:443 HTTP/1.1\r\n"],
)
def test_targets_no_route_can_match_answer_json(
    server: RunningServer, request_line: bytes
) -> None:
    with socket.create_connection(address(server), timeout=10) as conn:
        conn.sendall(request_line + HOST + b"Connection: close\r\n\r\n")
        status, headers, body = read_answer(conn)
    assert status == 404
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["message"]


def limit_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def test_with_256_files_slow_clients_cannot_stop_the_server(
    site: Path, tmp_path: Path
) -> None:
    log = tmp_path / "stderr.log"
    server = RunningServer(
        "--model-name", "echo", "--workers", "0", "--header-timeout", "2",
        env=subprocess_env(site, XDG_STATE_HOME=str(tmp_path / "state")),
        log=log, preexec_fn=limit_open_files,
    )  # fmt: skip
    conns: list[socket.socket] = []
    try:
        server.wait_serving()
        _, port = address(server)
        for _ in range(400):
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(b"GET /health HTTP/1.1\r\n")
            conns.append(conn)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as probe:
            probe.sendall(b"GET /health HTTP/1.1\r\n" + HOST + CLOSE)
            status, _, _ = read_answer(probe, timeout=8)
        # Answered: 503 while over the bound, 200 once the slow ones are gone.
        assert status in (200, 503)
        deadline = time.monotonic() + 15
        status = 0
        while status != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(b"GET /health HTTP/1.1\r\n" + HOST + CLOSE)
                    status = read_answer(c, timeout=5)[0]
            except OSError:
                continue
        assert status == 200  # the slow ones timed out and made room
    finally:
        for conn in conns:
            conn.close()
        try:
            server.terminate(timeout=30)
        finally:
            server.close()
    text = log.read_text()
    # A burst may still run out of files for a moment: said once, not per try.
    assert text.count("Too many open files") <= 2, text[-3000:]
    assert len(text.splitlines()) < 60, text[-3000:]


@pytest.mark.parametrize("workers", ["1", "0"])  # a process; threads of the server
def test_sigterm_answers_every_request_in_progress_and_exits_in_time(
    site: Path, tmp_path: Path, workers: str
) -> None:
    server = RunningServer(
        "--model-name", "gate", "--workers", workers, "--shutdown-timeout", "1",
        env=subprocess_env(site, XDG_STATE_HOME=str(tmp_path / "state")),
        log=tmp_path / "stderr.log",
    )
    try:
        server.wait_serving()
        gate = tmp_path / "never-opened"
        body = json.dumps({"gate": str(gate)}).encode()
        answers: list[tuple[int, dict, bytes]] = []
        errors: list[BaseException] = []

        def client() -> None:
            try:
                with socket.create_connection(address(server), timeout=30) as conn:
                    conn.sendall(
                        b"POST /v2/models/gate/predict/ HTTP/1.1\r\n" + HOST
                        + b"Content-Type: application/json\r\n"
                        + b"Content-Length: %d\r\n\r\n" % len(body) + body
                    )
                    answers.append(read_answer(conn, timeout=30))
            except BaseException as exc:  # noqa: BLE001  (reported below)
                errors.append(exc)

        clients = [threading.Thread(target=client) for _ in range(3)]
        for thread in clients:
            thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            _, health = server.get("/health")
            counts = health["models"]["gate"]
            if counts["busy"] + counts["queued"] == 3:
                break
            time.sleep(0.02)
        stopped = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        for thread in clients:
            thread.join(20)
        assert not errors, errors
        assert [status for status, _, _ in answers] == [503] * 3
        for _, headers, answer in answers:
            assert headers["content-type"].startswith("application/json")
            assert "--shutdown-timeout" in json.loads(answer)["message"]
        assert server.process.wait(30) == 0
        took = time.monotonic() - stopped
        assert took < 1 + SHUTDOWN_MARGIN, took
    finally:
        server.close()
