"""The demo model answers a client's mistakes with 422, naming the argument.

It is what a new user runs first and what the README's examples call: a
request that fits its schema but carries neither input, or a file that is
not a CSV of four numbers, must not look like a failure of the model (500).
"""

from __future__ import annotations

import aiohttp
import pytest

from deepaas.api import create_app
from deepaas.engine.build import build_executors
from deepaas.model.loading import MODEL_NAMESPACE, ModelSpec

PREDICT = "/v2/models/deepaas-demo/predict/"


@pytest.fixture
async def client(aiohttp_client, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPAAS_DEMO_DIR", str(tmp_path / "demo"))
    spec = ModelSpec("deepaas-demo", "deepaas.model.demo", MODEL_NAMESPACE)
    return await aiohttp_client(create_app(build_executors([spec], workers=0)))


def csv_upload(content: bytes, name: str = "samples.csv") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("data", content, filename=name, content_type="text/csv")
    return form


async def test_neither_input_is_422(client):
    for request in (
        client.post(PREDICT),
        client.post(PREDICT, json={}),
        client.post(PREDICT, data=aiohttp.FormData({"accept": "application/json"})),
    ):
        resp = await request
        assert resp.status == 422, await resp.text()
        assert "either a CSV file" in (await resp.json())["_schema"][0]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"1,2\n", "line 1 of the CSV has 2 values, expected 4"),
        (b"a,b,c,d\nx,1,2,3\n", "line 2 of the CSV is not numeric"),
        (b"\n\n", "the CSV file holds no samples"),
        (b"\x89PNG\r\n\x1a\n\x00", "not UTF-8 text"),
    ],
)
async def test_a_file_that_is_not_a_csv_of_samples_is_422(client, content, says):
    resp = await client.post(PREDICT, data=csv_upload(content))
    assert resp.status == 422, await resp.text()
    assert says in (await resp.json())["data"][0]


async def test_a_good_csv_is_classified(client):
    content = b"sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n"
    resp = await client.post(PREDICT, data=csv_upload(content))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["predictions"][0]["label"] == "setosa"
