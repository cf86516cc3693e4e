# ruff: noqa: F811 (tests take the imported make_client fixture as an argument)
"""DEEPaaS 2.x compatibility: paths, ids, status codes and the API description.

Issue 9 items 4 (repeated slashes), 5 (model ids), 8 (/v2/debug/), 12
(status codes), 13 (a model's own HTTP errors) and 14 (Swagger paths under
--base-path), each against a real server on loopback.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from yarl import URL

from deepaas.api.debug import DebugCapture
from deepaas.training import TrainingService
from tests.api.conftest import make_client  # noqa: F401 (the fixture)

# -- item 4: repeated slashes are merged -------------------------------------------


async def request(client: Any, method: str, path: str, **kwargs: Any) -> Any:
    """Send ``path`` as written (the test client reads ``//x`` as a host)."""
    url = URL(f"http://{client.host}:{client.port}{path}", encoded=True)
    assert url.raw_path == path.partition("?")[0]
    return await client.session.request(method, url, **kwargs)


async def test_repeated_slashes_answer_as_the_merged_path(make_client):
    client = await make_client("old-style", "echo")
    resp = await request(
        client, "GET", "///v2/models/old-style/"
    )  # the graphical front-end
    assert resp.status == 200
    body = await resp.json()
    assert (body["name"], body["author"], body["description"]) == (
        "old-style",
        "Tester",
        "old idiom",
    )
    listing = await request(client, "GET", "//v2//models//")
    assert [m["name"] for m in (await listing.json())["models"]] == [
        "old-style",
        "echo",
    ]
    predict = await request(
        client, "POST", "//v2//models/echo//predict/", params={"value": "q"}
    )
    assert await predict.json() == {"status": "OK", "predictions": "q"}
    form = aiohttp.FormData()  # a body goes through too
    form.add_field("data", b"12345", filename="x.bin")
    upload = await request(client, "POST", "/v2//models/old-style/predict//", data=form)
    assert (await upload.json())["predictions"]["size"] == 5


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "//v2/models/nope/", 404),
        ("GET", "//no//such//path", 404),
        ("DELETE", "//v2/models/echo/", 405),
        ("PUT", "//v2/models/nope//predict/", 404),
    ],
)
async def test_repeated_slashes_on_a_wrong_path_or_method_still_answer_json(
    make_client, method, path, status
):
    client = await make_client("echo")
    resp = await request(client, method, path)
    assert resp.status == status
    assert "message" in await resp.json()


async def test_repeated_slashes_under_a_base_path(make_client):
    client = await make_client("echo", base_path="/deepaas")
    resp = await request(client, "GET", "//deepaas//v2/models/echo/")
    assert (await resp.json())["name"] == "echo"


# -- item 5: id is the entry-point name unless the metadata sets it ----------------


async def test_model_id_defaults_to_the_entry_point_name(make_client):
    client = await make_client("header-trainer", "old-style", "predict-only")
    listing = (await (await client.get("/v2/models/")).json())["models"]
    assert [(m["id"], m["name"]) for m in listing] == [
        ("header-trainer", "header-trainer"),
        ("old-1", "old-style"),  # set by the metadata
        ("0", "predict-only"),  # no get_metadata: 2.x's fallback
    ]
    one = await (await client.get("/v2/models/header-trainer/")).json()
    assert one["id"] == "header-trainer"


# -- item 8: the debug endpoint at /v2/debug/ ------------------------------------


async def test_debug_is_served_at_v2_debug(make_client):
    off = await make_client("echo")
    assert (await off.get("/v2/debug/")).status == 204
    capture = DebugCapture()
    capture.install()
    try:
        client = await make_client("echo", debug_endpoint=True, debug_capture=capture)
        print("printed for the debug endpoint")
        resp = await client.get("/v2/debug/")
        text = await resp.text()
        assert (await client.get("/debug/")).status == 200
    finally:
        capture.uninstall()
    assert resp.status == 200
    assert "printed for the debug endpoint" in text


# -- item 12: status codes ----------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize(
    "path",
    ["/v2/models/nope/", "/v2/models/nope/predict/", "/v2/models/nope/train/"],
)
async def test_any_method_on_an_unknown_model_is_404(make_client, method, path):
    client = await make_client("echo")
    resp = await client.request(method, path)
    assert resp.status == 404
    assert "nope" in (await resp.json())["message"]


async def test_a_training_id_that_is_not_32_hex_digits_is_404(make_client, tmp_path):
    client = await make_client(
        "header-trainer", trainings=TrainingService(tmp_path / "state")
    )
    train = "/v2/models/header-trainer/train/"
    for method, path in [
        ("GET", f"{train}not-a-uuid"),
        ("DELETE", f"{train}not-a-uuid"),
        ("GET", f"{train}{'a' * 31}"),
        ("GET", f"{train}{'a' * 31}/logs"),
    ]:
        resp = await client.request(method, path)
        assert resp.status == 404, (method, path)
        assert "message" in await resp.json()
    unknown = await client.get(f"{train}{'a' * 32}")  # well formed, not there
    assert unknown.status == 404


async def test_listing_the_trainings_of_a_model_without_train_is_empty(
    make_client, tmp_path
):
    for trainings in (TrainingService(tmp_path / "state"), None):
        client = await make_client("echo", trainings=trainings)
        resp = await client.get("/v2/models/echo/train/")
        assert resp.status == 200
        assert await resp.json() == []
        assert (await client.post("/v2/models/echo/train/")).status == 501


# -- item 13: a model's own aiohttp HTTP errors ---------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
async def test_a_model_raising_an_http_error_gets_its_status_and_reason(
    make_client, workers
):
    client = await make_client("refuser", "echo", workers=workers)
    path = "/v2/models/refuser/predict/"
    for status, message in [
        (400, "the image is not RGB"),
        (413, "at most 10 pixels"),
        (503, "the GPU is busy"),
    ]:
        resp = await client.post(path, params={"status": str(status)})
        assert resp.status == status
        assert resp.content_type == "application/json"
        assert await resp.json() == {"message": message}
    failed = await client.post(path, params={"status": "404"})
    assert failed.status == 500  # urllib's HTTPError: the model failed
    assert "HTTPError" in (await failed.json())["message"]
    ok = await client.post("/v2/models/echo/predict/", params={"value": "on"})
    assert (await ok.json())["predictions"] == "on"


# -- item 14: Swagger paths under --base-path --------------------------------------


async def test_every_swagger_path_carries_the_base_path(make_client):
    client = await make_client("echo", base_path="/deepaas")
    swagger = await (await client.get("/deepaas/swagger.json")).json()
    openapi = await (await client.get("/deepaas/openapi.json")).json()
    assert swagger["basePath"] == "/"
    assert "servers" not in openapi
    assert set(swagger["paths"]) == set(openapi["paths"])
    for path, operations in swagger["paths"].items():
        assert path.startswith("/deepaas/"), path
        if "{" in path or "get" not in operations:
            continue
        # A client building its URL from the path alone reaches the endpoint.
        resp = await client.get(path)
        assert resp.status in (200, 204), path
