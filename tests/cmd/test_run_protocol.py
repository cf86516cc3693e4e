"""Requests too malformed for HTTP parsing still get a JSON error body."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest

from tests.conftest import subprocess_env

MALFORMED = [
    b"GARBAGE / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /v2/models/echo/predict/ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 10000 + b"\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS hello on the HTTP port
]


def exchange(address: tuple[str, int], raw: bytes) -> bytes:
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(raw)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


@pytest.mark.slow
def test_unparsable_requests_answer_json_400_and_the_server_goes_on(
    start_server,
    installed_models,
):
    server = start_server(
        "--model-name", "echo", "--workers", "0", env=subprocess_env(installed_models)
    )
    server.wait_serving()
    parts = urlsplit(server.url)
    address = (parts.hostname, parts.port)
    for raw in MALFORMED:
        answer = exchange(address, raw)
        head, _, body = answer.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n")[0]
        assert b" 400 " in status_line, (raw[:40], answer[:200])
        assert b"application/json" in head.lower()
        assert isinstance(json.loads(body)["message"], str)
    assert server.get("/v2/models/")[0] == 200
    assert server.terminate() == 0


@pytest.mark.slow
def test_an_oversized_header_is_logged_in_one_line_without_its_content(
    start_server,
    installed_models,
):
    server = start_server(
        "--model-name", "echo", "--workers", "0", env=subprocess_env(installed_models)
    )
    server.wait_serving()
    parts = urlsplit(server.url)
    address = (parts.hostname, parts.port)
    secret = b"Bearer sk-" + b"s3cr3t" * 17000  # a 100 KB header line
    raws = [
        b"GET /v2/models/ HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + secret
        + b"\r\n\r\n",
        b"GET /v2/models/?q=" + b"s3cr3t" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-s3cr3t\x01: y\r\n\r\n",
    ]
    for raw in raws:
        answer = exchange(address, raw)
        assert b" 400 " in answer.split(b"\r\n")[0], answer[:200]
        assert b"s3cr3t" not in answer
    assert server.get("/v2/models/")[0] == 200
    assert server.terminate() == 0
    log = server.stderr()
    assert "s3cr3t" not in log
    assert "Traceback" not in log
    refused = [line for line in log.splitlines() if "malformed request" in line]
    assert len(refused) == len(raws), log[-3000:]
    assert all(len(line) < 400 for line in refused), refused
