"""Forms with many parts: ``--max-form-parts`` (docs/deploying.md, "Request bodies").

A multipart body of 100,000 empty file parts is only 7 MB, well within
``--upload-max-size``, yet every part costs the server a temporary file.
Past ``--max-form-parts`` parts (files and fields alike; fields of a
url-encoded form too) the answer is 413 in JSON at once and the rest of the
body is not read; the files of the parts already read are removed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deepaas.api import create_app
from deepaas.config import build_config
from deepaas.engine.build import build_executors
from tests.conftest import spec, subprocess_env
from tests.servers import RunningServer

OLD = "/v2/models/old-style/predict/"
BOUNDARY = "parts-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
#: 100,000 empty file parts: about 7 MB.
MANY = 100_000


def multipart(files: int, fields: int = 0, *, content: bytes = b"") -> bytes:
    """A body of ``files`` file parts named ``data`` and ``fields`` text fields."""
    file_part = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="data"; '
            'filename="x.bin"\r\n\r\n'
        ).encode()
        + content
        + b"\r\n"
    )
    field_part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="mode"\r\n\r\nfast\r\n'
    ).encode()
    return file_part * files + field_part * fields + f"--{BOUNDARY}--\r\n".encode()


async def serve(aiohttp_client: Any, tmp_path: Path, **options: Any) -> Any:
    """The API over the ``old-style`` model, uploads under ``tmp_path/uploads``."""
    from deepaas.api import ApiSettings

    uploads = tmp_path / "uploads"
    uploads.mkdir(exist_ok=True)
    executors = build_executors([spec("old-style")], workers=0)
    app = create_app(
        executors, settings=ApiSettings(upload_dir=str(uploads)), **options
    )
    return await aiohttp_client(app)


async def removed(uploads: Path, within: float = 10) -> bool:
    """Whether the upload files under ``uploads`` go within a few seconds.

    A refused body is answered at once; its writer thread removes the files
    of the parts already read right after it has created them.
    """
    deadline = time.monotonic() + within
    while list(uploads.glob("deepaas-upload-*")):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def refused(resp: aiohttp.ClientResponse) -> str:
    assert resp.status == 413, await resp.text()
    assert resp.content_type == "application/json"
    message: str = (await resp.json())["message"]
    return message


def test_the_default_limit_is_1000_parts():
    from deepaas.api.request_args import DEFAULT_MAX_FORM_PARTS

    assert DEFAULT_MAX_FORM_PARTS == 1000
    assert build_config([], environ={}).max_form_parts == 1000
    assert build_config(["--max-form-parts", "5"], environ={}).max_form_parts == 5


async def test_a_body_of_100000_parts_is_refused_at_once(
    installed_models, aiohttp_client, tmp_path
):
    client = await serve(aiohttp_client, tmp_path)
    started = time.monotonic()
    resp = await client.post(
        OLD, data=multipart(MANY), headers={"Content-Type": MULTIPART}
    )
    message = await refused(resp)
    assert time.monotonic() - started < 2
    assert message == (
        "the multipart body has more than 1000 parts, files and fields "
        "together (--max-form-parts)"
    )
    assert await removed(tmp_path / "uploads")  # those of the first 1000 parts


async def test_a_body_at_the_limit_is_read(installed_models, aiohttp_client, tmp_path):
    client = await serve(aiohttp_client, tmp_path, max_form_parts=4)
    body = multipart(1, 3, content=b"abc")  # data, and mode three times
    resp = await client.post(OLD, data=body, headers={"Content-Type": MULTIPART})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["predictions"]["size"] == 3

    # One field more: fields count as parts, as files do.
    body = multipart(1, 4, content=b"abc")
    message = await refused(
        await client.post(OLD, data=body, headers={"Content-Type": MULTIPART})
    )
    assert "more than 4 parts" in message and "--max-form-parts" in message
    # So do files.
    body = multipart(5)
    assert "more than 4 parts" in await refused(
        await client.post(OLD, data=body, headers={"Content-Type": MULTIPART})
    )
    assert await removed(tmp_path / "uploads")


async def test_url_encoded_fields_are_held_to_the_same_limit(
    installed_models, aiohttp_client, tmp_path
):
    client = await serve(aiohttp_client, tmp_path, max_form_parts=3)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    resp = await client.post(OLD, data="mode=slow&n=2&a=1", headers=form)
    assert resp.status == 422, await resp.text()  # read; no file: "data" missing
    message = await refused(
        await client.post(OLD, data="mode=slow&n=2&a=1&b=2", headers=form)
    )
    assert message == "the form has more than 3 fields (--max-form-parts)"


async def test_zero_means_no_limit(installed_models, aiohttp_client, tmp_path):
    client = await serve(aiohttp_client, tmp_path, max_form_parts=0)
    resp = await client.post(
        OLD, data=multipart(1, 1500), headers={"Content-Type": MULTIPART}
    )
    assert resp.status == 200, await resp.text()
    with pytest.raises(ValueError, match=r"--max-form-parts must be >= 0 \(got -1\)"):
        await serve(aiohttp_client, tmp_path, max_form_parts=-1)


async def test_a_large_upload_arrives_intact(
    installed_models, aiohttp_client, tmp_path
):
    """Written in a thread in batches: every byte, in order, in one file."""
    client = await serve(aiohttp_client, tmp_path)
    content = bytes(range(256)) * (12 * 1024 + 7)  # about 3 MiB, several batches
    form = aiohttp.FormData()
    form.add_field("data", content, filename="big.bin")
    resp = await client.post(OLD, data=form)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["predictions"]["size"] == len(content)


class Server(RunningServer):
    """``deepaas-run --workers 0`` over the ``old-style`` model."""

    def __init__(self, tmp: Path, site: Path) -> None:
        self.uploads = tmp / "uploads"
        self.uploads.mkdir()
        env = subprocess_env(site, TMPDIR=str(self.uploads))
        super().__init__(
            "--model-name",
            "old-style",
            "--workers",
            "0",
            "--metrics",
            "false",
            env=env,
            log=tmp / "server.log",
        )
        self.wait_serving(90)


@pytest.fixture
def server(installed_models: Path, tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path, installed_models)
    yield running
    running.close()


@pytest.mark.slow
async def test_health_answers_while_two_such_bodies_arrive(server):
    """Two clients send 100,000 parts each; /health never waits on them."""
    body = multipart(MANY)
    url = server.url + OLD
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=120)
    ) as session:
        await (await session.get(server.url + "/health")).read()  # connected

        async def post() -> tuple[int, str, float]:
            started = time.monotonic()
            async with session.post(
                url, data=body, headers={"Content-Type": MULTIPART}
            ) as resp:
                return resp.status, await resp.text(), time.monotonic() - started

        posts = [asyncio.ensure_future(post()) for _ in range(2)]
        waits = []
        while not all(p.done() for p in posts) or len(waits) < 10:
            started = time.monotonic()
            async with session.get(server.url + "/health") as resp:
                assert resp.status == 200
            waits.append(time.monotonic() - started)
            await asyncio.sleep(0.01)
        answers = await asyncio.gather(*posts)
    for status, text, took in answers:
        assert status == 413, text
        assert "--max-form-parts" in text
        assert took < 5  # two at once, on one event loop (not 115 s each)
    assert max(waits) < 0.1, sorted(waits)[-5:]
    assert await removed(server.uploads)
