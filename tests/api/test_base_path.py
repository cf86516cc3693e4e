"""--base-path: everything served under a prefix, links included."""

import pytest
from openapi_spec_validator import OpenAPIV2SpecValidator, validate


@pytest.fixture
async def client(make_client):
    return await make_client("echo", base_path="/deepaas")


async def test_root_links_carry_the_prefix(client):
    for path in ("/deepaas/", "/deepaas"):
        resp = await client.get(path)
        assert resp.status == 200, path
        assert await resp.json() == {
            "versions": [{"version": "stable", "id": "v2", "links": [
                {"rel": "self", "type": "application/json",
                 "href": "/deepaas/v2/"}]}],
            "links": [
                {"rel": "help", "type": "text/html", "href": "/deepaas/api"},
                {"rel": "describedby", "type": "application/json",
                 "href": "/deepaas/swagger.json"},
            ],
        }


async def test_models_and_predict_under_the_prefix(client):
    body = await (await client.get("/deepaas/v2/models/")).json()
    assert body["models"][0]["links"] == [
        {"rel": "self", "href": "/deepaas/v2/models/echo"}]
    resp = await client.post("/deepaas/v2/models/echo/predict", params={"value": "p"})
    assert await resp.json() == {"status": "OK", "predictions": "p"}


async def test_nothing_is_served_outside_the_prefix(client):
    for path in ("/", "/v2/", "/v2/models/", "/swagger.json", "/api"):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert resp.content_type == "application/json"


async def test_docs_and_spec_under_the_prefix(client):
    document = await (await client.get("/deepaas/swagger.json")).json()
    validate(document, cls=OpenAPIV2SpecValidator)
    # As in DEEPaaS 2.x, the paths carry the prefix (clients read them alone).
    assert document["basePath"] == "/"
    assert "/deepaas/v2/models/echo/predict/" in document["paths"]
    assert all(path.startswith("/deepaas/") for path in document["paths"])
    openapi = await (await client.get("/deepaas/openapi.json")).json()
    assert "servers" not in openapi
    assert set(openapi["paths"]) == set(document["paths"])
    page = await (await client.get("/deepaas/api")).text()
    assert '"/deepaas/swagger.json"' in page
    assert "/deepaas/api/static/swagger-ui.css" in page
    assert (await client.get("/deepaas/api/static/swagger-ui.css")).status == 200
    redirect = await client.get("/deepaas/ui", allow_redirects=False)
    assert redirect.headers["Location"] == "/deepaas/api"
    assert (await client.get("/deepaas/debug/")).status == 204


@pytest.mark.parametrize("given", ["deepaas", "/deepaas/", " /deepaas "])
async def test_base_path_is_normalised(make_client, given):
    client = await make_client("echo", base_path=given)
    assert (await client.get("/deepaas/v2/")).status == 200
