# ruff: noqa: F811 (tests take the imported make_client fixture as an argument)
"""DEEPaaS 2.x compatibility: how a request's arguments and Accept are read.

Issue 9 items 1 (header arguments), 9 (content negotiation), 12 (a
malformed JSON body) and issue 10 item 10 (a list written as a JSON list),
each against a real server on loopback.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from deepaas.training import TrainingService
from tests.api.conftest import make_client  # noqa: F401 (the fixture)

TRAIN = "/v2/models/header-trainer/train/"


async def finished(client: Any, uuid: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = await (await client.get(f"{TRAIN}{uuid}")).json()
        if body["status"] not in ("queued", "running"):
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)


# -- item 1: arguments declared location="headers" ------------------------------


@pytest.mark.slow
async def test_a_training_argument_declared_in_headers_is_read_from_them(
    make_client, tmp_path
):
    client = await make_client(
        "header-trainer", trainings=TrainingService(tmp_path / "state")
    )
    resp = await client.post(TRAIN, headers={"Accept": "application/json"})
    body = await resp.json()
    assert resp.status == 200, body
    assert body["args"] == {"accept": "application/json", "epochs": 1}
    assert body["status"] == "running"
    done = await finished(client, body["uuid"])
    assert done["status"] == "done", done
    assert done["result"]["output"] == {"accept": "application/json", "epochs": 1}

    # The header is validated by the model's field, as DEEPaaS 2.x did.
    refused = await client.post(TRAIN, headers={"Accept": "text/html"})
    assert refused.status == 422
    assert list(await refused.json()) == ["accept"]


async def test_a_predict_argument_declared_in_headers_is_read_from_them(make_client):
    client = await make_client("header-trainer")
    path = "/v2/models/header-trainer/predict/"
    resp = await client.post(path, headers={"X-Request-Tag": "t-42"})
    assert await resp.json() == {"status": "OK", "predictions": {"tag": "t-42"}}
    missing = await client.post(path)
    assert missing.status == 422
    assert await missing.json() == {
        "x-request-tag": ["Missing data for required field."]
    }


async def test_swagger_documents_header_arguments_as_header_parameters(make_client):
    client = await make_client("header-trainer")
    document = await (await client.get("/swagger.json")).json()
    train = document["paths"]["/v2/models/header-trainer/train/"]["post"]
    (accept,) = [p for p in train["parameters"] if p["name"] == "accept"]
    assert accept["in"] == "header"
    assert accept["required"] is True
    assert accept["enum"] == ["application/json", "text/plain"]
    predict = document["paths"]["/v2/models/header-trainer/predict/"]["post"]
    (tag,) = [p for p in predict["parameters"] if p["name"] == "x-request-tag"]
    assert tag["in"] == "header"
    openapi = await (await client.get("/openapi.json")).json()
    train3 = openapi["paths"]["/v2/models/header-trainer/train/"]["post"]
    assert {"name": "accept", "in": "header"}.items() <= train3["parameters"][0].items()


# -- item 9: content negotiation as lenient as 2.x --------------------------------


async def test_a_concrete_type_inside_an_offered_range_is_answered_as_that_type(
    make_client,
):
    client = await make_client("image-range")
    path = "/v2/models/image-range/predict/"
    resp = await client.post(path, headers={"Accept": "image/png"})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "image/png"
    assert await resp.read() == b"\x89PNG fake"
    wanted_json = await client.post(path, headers={"Accept": "application/json"})
    assert await wanted_json.json() == {
        "status": "OK",
        "predictions": {"accept": "application/json"},
    }


@pytest.mark.parametrize(
    "model, header, media_type",
    [
        ("image-range", "application/xml", "application/json"),
        ("images", "video/mp4", "image/png"),
        ("images", "text/html,application/xhtml+xml;q=0.9", "image/png"),
    ],
)
async def test_an_accept_header_allowing_none_of_the_choices_gets_the_first(
    make_client, model, header, media_type
):
    client = await make_client(model)
    resp = await client.post(f"/v2/models/{model}/predict/", headers={"Accept": header})
    assert resp.status == 200, await resp.text()
    assert resp.content_type == media_type


async def test_an_explicit_accept_argument_outside_the_choices_is_422(make_client):
    client = await make_client("images")
    resp = await client.post(
        "/v2/models/images/predict/", params={"accept": "video/mp4"}
    )
    assert resp.status == 422
    assert list(await resp.json()) == ["accept"]


# -- item 12: a malformed JSON body ---------------------------------------------------


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]"])
async def test_a_malformed_json_body_is_400_with_the_2x_key(
    make_client, tmp_path, body
):
    client = await make_client(
        "echo", "header-trainer", trainings=TrainingService(tmp_path / "state")
    )
    for path in ("/v2/models/echo/predict/", TRAIN):
        resp = await client.post(
            path, data=body, headers={"Content-Type": "application/json"}
        )
        assert resp.status == 400
        answer = await resp.json()
        assert answer["json"] == ["Invalid JSON body."]
        assert answer["message"]


# -- issue 10 item 10: a list written as a JSON list -------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
async def test_a_list_argument_may_be_one_json_list(make_client, workers):
    client = await make_client("lists", workers=workers)
    path = "/v2/models/lists/predict/"

    async def predictions(**kwargs: Any) -> Any:
        resp = await client.post(path, **kwargs)
        body = await resp.json()
        assert resp.status == 200, body
        return body["predictions"]

    form = aiohttp.FormData()  # multipart, as curl -F sends it
    form.add_field("features", "[1, 2.5, 3]")
    form.add_field("labels", '["cat", "dog"]')
    form.add_field("text", "[kept as text]")
    assert await predictions(data=form) == {
        "features": [1.0, 2.5, 3.0],
        "labels": ["cat", "dog"],
        "text": "[kept as text]",
    }
    assert (await predictions(params={"features": "[1,2,3]"}))["features"] == [
        1.0,
        2.0,
        3.0,
    ]
    assert (await predictions(data={"features": "[4]"}))["features"] == [4.0]
    repeated = [
        ("features", "1"),
        ("features", "2"),
        ("labels", "[x]"),
        ("labels", "y"),
    ]
    assert await predictions(params=repeated) == {
        "features": [1.0, 2.0],
        "labels": ["[x]", "y"],
        "text": "",
    }
    assert (await predictions(params={"labels": "['a', 'b']", "features": "7"}))[
        "labels"
    ] == ["a", "b"]  # a Python literal, as deepaas-cli takes it
    wrong = await client.post(path, params={"features": '[1, "x"]'})
    assert wrong.status == 422
    assert list(await wrong.json()) == ["features"]


# -- the Content-Type of answers ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
async def test_json_answers_state_their_charset_as_2x_does(make_client, workers):
    """2.6.0 answers JSON as ``application/json; charset=utf-8``, predict too."""
    client = await make_client("echo", "images", workers=workers)
    predicted = await client.post("/v2/models/echo/predict/", json={"text": "é"})
    assert predicted.status == 200, await predicted.text()
    assert predicted.headers["Content-Type"] == "application/json; charset=utf-8"
    listed = await client.get("/v2/models/")
    assert listed.headers["Content-Type"] == "application/json; charset=utf-8"
    image = await client.post(
        "/v2/models/images/predict/", headers={"Accept": "image/png"}
    )
    assert image.headers["Content-Type"] == "image/png"
