"""Bad input gets a 4xx in JSON, and no answer shows the server's paths.

Bodies held in memory stop at ``--client-max-size`` (16 MiB by default),
multipart bodies, whose files go to disk, at ``--upload-max-size``; JSON
nested beyond what the parser can follow is a 400; a training upload with a
file name longer than the file system allows is kept under a shorter name;
an error of the framework answers a generic message with a reference that
the log repeats.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
import pytest

from deepaas.api.settings import DEFAULT_CLIENT_MAX_SIZE, DEFAULT_UPLOAD_MAX_SIZE
from deepaas.config import build_config
from deepaas.training import TrainingService

ECHO = "/v2/models/echo/predict/"
OLD = "/v2/models/old-style/predict/"
TRAIN = "/v2/models/trainer/train/"


async def json_error(resp: aiohttp.ClientResponse, status: int) -> dict:
    body = await resp.json()
    assert resp.status == status, body
    assert resp.content_type == "application/json"
    return body


def test_the_options_default_to_the_api_defaults() -> None:
    conf = build_config([], environ={})
    assert conf.client_max_size == DEFAULT_CLIENT_MAX_SIZE == 16 * 1024 * 1024
    assert conf.upload_max_size == DEFAULT_UPLOAD_MAX_SIZE == 1024**3


async def test_a_json_body_over_the_default_limit_is_413_before_it_is_read(
    make_client,
):
    client = await make_client("echo")
    size = DEFAULT_CLIENT_MAX_SIZE + 1
    body = b'{"value": "' + b"x" * (size - 13) + b'"}'
    started = time.monotonic()
    resp = await client.post(
        ECHO, data=body, headers={"Content-Type": "application/json"}
    )
    answer = await json_error(resp, 413)
    assert "--client-max-size" in answer["message"]
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("content_type", "head", "tail"),
    [
        ("application/json", b'{"value": "', b'"}'),
        ("application/x-www-form-urlencoded", b"value=", b""),
    ],
)
async def test_a_chunked_body_over_the_limit_is_413(
    make_client, content_type: str, head: bytes, tail: bytes
):
    client = await make_client("echo", client_max_size=1000)

    async def chunks():
        yield head
        for _ in range(10):
            yield b"x" * 500
        yield tail

    resp = await client.post(
        ECHO, data=chunks(), headers={"Content-Type": content_type}
    )
    answer = await json_error(resp, 413)
    assert "--client-max-size (1000 bytes)" in answer["message"]


async def test_uploaded_files_are_held_to_their_own_limit(make_client):
    client = await make_client("old-style", client_max_size=1000, upload_max_size=8000)
    form = aiohttp.FormData()
    form.add_field("data", b"x" * 5000, filename="bigger-than-memory-limit.bin")
    resp = await client.post(OLD, data=form)
    assert resp.status == 200, await resp.text()  # to disk, not memory
    assert (await resp.json())["predictions"]["size"] == 5000

    form = aiohttp.FormData()
    form.add_field("data", b"x" * 9000, filename="too-big.bin")
    answer = await json_error(await client.post(OLD, data=form), 413)
    assert "--upload-max-size (8000 bytes)" in answer["message"]


async def test_a_multipart_text_field_is_held_to_the_memory_limit(make_client):
    client = await make_client("echo", client_max_size=1000)
    form = aiohttp.FormData()
    form.add_field("value", "x" * 5000)
    answer = await json_error(await client.post(ECHO, data=form), 413)
    assert "--client-max-size" in answer["message"]


async def test_json_nested_100000_deep_is_400_without_a_traceback(
    make_client, caplog: pytest.LogCaptureFixture
):
    client = await make_client("echo")
    deep = b'{"value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with caplog.at_level(logging.INFO):
        resp = await client.post(
            ECHO, data=deep, headers={"Content-Type": "application/json"}
        )
        answer = await json_error(resp, 400)
    assert answer["json"] == ["Invalid JSON body."]
    assert "nested too deeply" in answer["message"]
    assert "Traceback" not in caplog.text
    assert "RecursionError" not in caplog.text


async def test_an_error_of_the_framework_hides_paths_and_gives_a_reference(
    make_client, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    missing = tmp_path / "secret-place" / "uploads"  # never created
    client = await make_client("old-style", upload_dir=str(missing))
    form = aiohttp.FormData()
    form.add_field("data", b"abc", filename="a.bin")
    with caplog.at_level(logging.ERROR):
        answer = await json_error(await client.post(OLD, data=form), 500)
    assert "secret-place" not in str(answer)
    assert str(tmp_path) not in str(answer)
    reference = answer["reference"]
    assert reference in answer["message"]
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback, in the log
    assert "secret-place" in caplog.text


async def test_a_model_error_keeps_the_models_message(make_client):
    client = await make_client("failing")
    answer = await json_error(await client.post("/v2/models/failing/predict/"), 500)
    assert "the model exploded" in answer["message"]
    assert "reference" not in answer


@pytest.mark.slow
async def test_a_training_upload_with_a_300_character_name_is_kept_shorter(
    make_client, tmp_path: Path
):
    service = TrainingService(tmp_path / "state")
    client = await make_client("trainer", trainings=service)
    name = "d" * 296 + ".csv"
    form = aiohttp.FormData()
    form.add_field("data", b"rows", filename=name, content_type="text/csv")
    resp = await client.post(TRAIN, data=form)
    started = await resp.json()
    assert resp.status == 200, started
    assert started["args"]["data"] == ["data", "text/csv", name]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = await (await client.get(f"{TRAIN}{started['uuid']}")).json()
        if record["status"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.05)
    assert record["status"] == "done", record
    data = record["result"]["output"]["data"]
    assert data["content"] == "rows"
    assert data["original_filename"] == name  # the model still sees it whole
    copy = Path(data["path"]).name
    assert copy.endswith(".csv") and len(copy.encode()) <= 255


@pytest.mark.slow
async def test_json_nested_500_deep_is_400_and_the_worker_goes_on(make_client):
    # Deep enough for json.loads, too deep to be pickled to a worker process.
    client = await make_client("lists", workers=1)
    deep = b'{"features": ' + b"[" * 500 + b"1" + b"]" * 500 + b"}"
    resp = await client.post(
        "/v2/models/lists/predict/",
        data=deep,
        headers={"Content-Type": "application/json"},
    )
    answer = await json_error(resp, 400)
    assert "nested more than 100 levels" in answer["message"]
    ok = await client.post("/v2/models/lists/predict/", json={"features": [1, 2]})
    assert (await ok.json())["predictions"]["features"] == [1.0, 2.0]


@pytest.mark.parametrize("depth", [500, 100_000])
async def test_a_deeply_nested_list_literal_in_a_form_is_422(make_client, depth):
    client = await make_client("lists")
    value = "[" * depth + "1" + "]" * depth
    resp = await client.post("/v2/models/lists/predict/", data={"features": value})
    answer = await json_error(resp, 422)
    assert "features" in answer
