"""GET /v2/models/ and /v2/models/<name>/: metadata, id, name and links."""

import pytest


def self_link(name):
    return [{"rel": "self", "href": f"/v2/models/{name}"}]


async def test_models_lists_every_served_model_with_its_metadata(make_client):
    client = await make_client("old-style", "new-style")
    resp = await client.get("/v2/models/")
    assert resp.status == 200
    assert await resp.json() == {
        "models": [
            {
                "id": "old-1",
                "name": "old-style",
                "description": "old idiom",
                "author": "Tester",
                "version": "0.1",
                "links": self_link("old-style"),
            },
            {
                "id": "new-style",
                "name": "new-style",
                "description": "new idiom",
                "version": "2.0",
                "links": self_link("new-style"),
            },
        ]
    }


@pytest.mark.parametrize("path", ["/v2/models/old-style/", "/v2/models/old-style"])
async def test_one_model_with_and_without_trailing_slash(make_client, path):
    client = await make_client("old-style")
    resp = await client.get(path)
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == "old-1"
    assert body["name"] == "old-style"
    assert body["author"] == "Tester"
    assert body["links"] == self_link("old-style")


async def test_models_list_without_trailing_slash(make_client):
    client = await make_client("echo")
    resp = await client.get("/v2/models")
    assert resp.status == 200
    assert [m["name"] for m in (await resp.json())["models"]] == ["echo"]


async def test_failing_get_metadata_falls_back_to_defaults(make_client):
    client = await make_client("failing")
    resp = await client.get("/v2/models/failing/")
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == "0"
    assert body["name"] == "failing"
    assert isinstance(body["description"], str) and body["description"]
    assert body["links"] == self_link("failing")


async def test_model_without_get_metadata_gets_the_fallback(make_client):
    client = await make_client("predict-only")
    body = await (await client.get("/v2/models/predict-only")).json()
    assert body["id"] == "0"
    assert body["name"] == "predict-only"
    assert body["description"]
    assert body["links"] == self_link("predict-only")


async def test_metadata_links_are_kept_after_the_self_link(make_client):
    client = await make_client("metadata-links")
    body = await (await client.get("/v2/models/metadata-links/")).json()
    assert body["links"] == [
        {"rel": "self", "href": "/v2/models/metadata-links"},
        {"rel": "docs", "href": "https://example.org/docs"},
    ]
    assert body["name"] == "Linked model"


async def test_unknown_model_is_404_naming_the_served_ones(make_client):
    client = await make_client("echo")
    resp = await client.get("/v2/models/nope/")
    assert resp.status == 404
    body = await resp.json()
    assert "'nope'" in body["message"]
    assert "echo" in body["message"]




async def test_a_model_whose_name_needs_quoting_is_served_too(
    installed_models, aiohttp_client
):
    """Only URL-plain names get a plain predict route; the others still work."""
    from deepaas.api import create_app
    from deepaas.engine.build import build_executors
    from deepaas.model.loading import ModelSpec
    from tests.conftest import FAKE_MODELS

    name = "echo v2+1"
    spec = ModelSpec(name, FAKE_MODELS["echo"], None)  # imported directly
    client = await aiohttp_client(create_app(build_executors([spec], workers=0)))
    quoted = "echo%20v2%2B1"
    resp = await client.post(f"/v2/models/{quoted}/predict/", params={"value": "x"})
    assert resp.status == 200
    assert await resp.json() == {"status": "OK", "predictions": "x"}
    resp = await client.get(f"/v2/models/{quoted}/")
    assert (await resp.json())["name"] == name
