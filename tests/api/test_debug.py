"""GET /debug/: 204 when switched off, captured output when on."""

import logging
import sys

import pytest

from deepaas.api.debug import DebugCapture


@pytest.mark.parametrize("path", ["/debug/", "/debug"])
async def test_debug_is_204_when_off(make_client, path):
    client = await make_client("echo")
    resp = await client.get(path)
    assert resp.status == 204
    assert await resp.read() == b""


async def test_debug_is_204_when_on_without_a_capture(make_client):
    client = await make_client("echo", debug_endpoint=True)
    assert (await client.get("/debug/")).status == 204


async def test_debug_shows_printed_and_logged_lines(make_client):
    capture = DebugCapture()
    capture.install()
    try:
        client = await make_client("echo", debug_endpoint=True,
                                   debug_capture=capture)
        print("hello from stdout")
        print("hello from stderr", file=sys.stderr)
        logging.getLogger("some.model").warning("a warning from the model")
        resp = await client.get("/debug/")
    finally:
        capture.uninstall()
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    assert "[stdout] hello from stdout" in text
    assert "[stderr] hello from stderr" in text
    assert "a warning from the model" in text
    assert "[log]" in text


async def test_capture_off_ignores_a_given_capture(make_client):
    capture = DebugCapture()
    client = await make_client("echo", debug_endpoint=False, debug_capture=capture)
    assert (await client.get("/debug/")).status == 204


def test_uninstall_restores_the_streams():
    before = (sys.stdout, sys.stderr)
    capture = DebugCapture(max_lines=2)
    capture.install()
    print("one\ntwo\nthree")
    capture.uninstall()
    assert (sys.stdout, sys.stderr) == before
    assert capture.text() == "[stdout] two\n[stdout] three\n"
    assert capture not in logging.getLogger().handlers
