"""GET / and GET /v2/: the exact bodies existing clients parse."""

import pytest

VERSIONS = {
    "versions": [
        {
            "version": "stable",
            "id": "v2",
            "links": [{"rel": "self", "type": "application/json", "href": "/v2/"}],
        }
    ],
    "links": [
        {"rel": "help", "type": "text/html", "href": "/api"},
        {"rel": "describedby", "type": "application/json", "href": "/swagger.json"},
    ],
}

V2 = {
    "version": "stable",
    "id": "v2",
    "links": [{"rel": "self", "type": "application/json", "href": "/v2/"}],
}


async def test_root_lists_the_v2_version_and_the_docs(make_client):
    client = await make_client("echo")
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == VERSIONS


@pytest.mark.parametrize("path", ["/v2/", "/v2"])
async def test_v2_answers_with_and_without_trailing_slash(make_client, path):
    client = await make_client("echo")
    resp = await client.get(path)
    assert resp.status == 200
    assert await resp.json() == V2


async def test_versions_are_read_only(make_client):
    client = await make_client("echo")
    resp = await client.post("/v2/")
    assert resp.status == 405
    assert resp.content_type == "application/json"
    assert "GET" in resp.headers["Allow"]
