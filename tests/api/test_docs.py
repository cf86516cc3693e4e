"""Swagger UI at /api, served offline from packaged assets; /ui redirects."""

import re

import pytest


@pytest.mark.parametrize("path", ["/api", "/api/"])
async def test_swagger_ui_page_points_at_the_spec(make_client, path):
    client = await make_client("echo")
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    assert "SwaggerUIBundle" in page
    assert '"/swagger.json"' in page


async def test_every_asset_of_the_page_is_served_locally(make_client):
    client = await make_client("echo")
    page = await (await client.get("/api")).text()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(assets) >= 3
    for asset in assets:
        assert asset.startswith("/api/static/"), asset  # no CDN
        resp = await client.get(asset)
        assert resp.status == 200, asset
        assert len(await resp.read()) > 0
    bundle = await client.get("/api/static/swagger-ui-bundle.js")
    assert "javascript" in bundle.content_type


async def test_ui_redirects_to_api(make_client):
    client = await make_client("echo")
    for path in ("/ui", "/ui/"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 302
        assert resp.headers["Location"] == "/api"
    followed = await client.get("/ui")
    assert followed.status == 200
    assert "SwaggerUIBundle" in await followed.text()


async def test_doc_endpoint_off_hides_the_ui_but_not_the_spec(make_client):
    client = await make_client("echo", doc_endpoint=False)
    for path in ("/api", "/ui", "/api/static/swagger-ui.css"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 404
        assert resp.content_type == "application/json"
    assert (await client.get("/swagger.json")).status == 200
    assert (await client.get("/openapi.json")).status == 200


async def test_unknown_static_asset_is_json_404(make_client):
    client = await make_client("echo")
    resp = await client.get("/api/static/nope.js")
    assert resp.status == 404
    assert resp.content_type == "application/json"
    for path in ("/api/static/..%2F..%2F..%2Fetc%2Fpasswd", "/api/static/.hidden",
                 "/api/static/"):
        resp = await client.get(path)
        assert resp.status in (403, 404), path
        assert resp.content_type == "application/json"
