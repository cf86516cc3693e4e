"""The API descriptions say what the server answers, errors included.

A client generated from ``/swagger.json`` or ``/openapi.json`` (or a fuzzer
that reads them) must find every answer there: the 503 of ``/ready``, the
JSON errors of the training log, the form of a training id, and no train
operations for a model that cannot train.
"""

from __future__ import annotations

from openapi_spec_validator import (
    OpenAPIV2SpecValidator,
    OpenAPIV31SpecValidator,
    validate,
)

from deepaas.api import create_app
from deepaas.api.security.auth import AuthPolicy, StaticTokens
from deepaas.api.security.guard import Guard
from deepaas.engine.build import build_executors
from deepaas.training import TrainingService
from tests.conftest import spec


async def documents(client) -> tuple[dict, dict]:
    v2 = await (await client.get("/swagger.json")).json()
    v3 = await (await client.get("/openapi.json")).json()
    validate(v2, cls=OpenAPIV2SpecValidator)
    validate(v3, cls=OpenAPIV31SpecValidator)
    return v2, v3


async def test_a_model_without_train_documents_no_train_operation(make_client):
    client = await make_client("echo", "trainer")
    v2, v3 = await documents(client)
    for document in (v2, v3):
        assert "/v2/models/trainer/train/" in document["paths"]
        assert not [p for p in document["paths"] if p.startswith("/v2/models/echo/t")]
    resp = await client.get("/v2/models/echo/train/")  # still [] as in 2.x
    assert (resp.status, await resp.json()) == (200, [])


async def test_training_ids_have_their_pattern(make_client):
    client = await make_client("trainer")
    v2, v3 = await documents(client)
    for suffix in ("{uuid}", "{uuid}/logs"):
        path = f"/v2/models/trainer/train/{suffix}"
        (param2,) = [p for p in v2["paths"][path]["parameters"] if p["in"] == "path"]
        (param3,) = [p for p in v3["paths"][path]["parameters"] if p["in"] == "path"]
        assert param2["pattern"] == param3["schema"]["pattern"] == "^[0-9a-fA-F]{32}$"
    resp = await client.get("/v2/models/trainer/train/not-an-id")
    assert resp.status == 404


async def test_the_503_of_ready_is_documented(make_client):
    client = await make_client("echo")
    v2, v3 = await documents(client)
    assert "503" in v2["paths"]["/ready"]["get"]["responses"]
    assert "application/json" in v3["paths"]["/ready"]["get"]["responses"]["503"][
        "content"
    ]


async def test_the_json_errors_of_the_training_log_are_documented(make_client):
    client = await make_client("trainer")
    v2, v3 = await documents(client)
    logs2 = v2["paths"]["/v2/models/trainer/train/{uuid}/logs"]["get"]
    assert logs2["produces"] == ["text/plain", "application/json"]
    assert logs2["responses"]["404"]["schema"] == {"$ref": "#/definitions/Error"}
    logs3 = v3["paths"]["/v2/models/trainer/train/{uuid}/logs"]["get"]
    assert set(logs3["responses"]["404"]["content"]) == {"application/json"}
    resp = await client.get(f"/v2/models/trainer/train/{'0' * 32}/logs")
    assert resp.status in (404, 501)  # no such training, or none configured
    assert resp.content_type == "application/json"


async def test_body_limits_and_timeouts_are_documented(make_client):
    client = await make_client("trainer")
    v2, _ = await documents(client)
    for path in ("/v2/models/trainer/predict/", "/v2/models/trainer/train/"):
        responses = v2["paths"][path]["post"]["responses"]
        assert {"408", "413", "415"} <= set(responses)


async def test_metrics_are_documented_when_served(make_client):
    client = await make_client("echo")
    v2, v3 = await documents(client)
    assert v2["paths"]["/metrics"]["get"]["produces"] == [
        "text/plain",
        "application/openmetrics-text",
        "application/json",  # its errors
    ]
    answer = v3["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(answer) == {"text/plain", "application/openmetrics-text"}
    failed2 = v2["paths"]["/metrics"]["get"]["responses"]["500"]
    assert failed2["schema"] == {"$ref": "#/definitions/Error"}
    failed3 = v3["paths"]["/metrics"]["get"]["responses"]["500"]["content"]
    assert set(failed3) == {"application/json"}
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.content_type == "text/plain"

    client = await make_client("echo", metrics=False)
    v2, v3 = await documents(client)
    assert "/metrics" not in v2["paths"] and "/metrics" not in v3["paths"]
    assert (await client.get("/metrics")).status == 404


async def test_the_204_of_the_debug_endpoint_is_documented(make_client):
    client = await make_client("echo")  # no --debug-endpoint
    v2, v3 = await documents(client)
    resp = await client.get("/v2/debug/")
    assert resp.status == 204
    for document in (v2, v3):
        assert "204" in document["paths"]["/v2/debug/"]["get"]["responses"]


JSON = "application/json"
EVERYTHING = "tok-everything-0123456789"
READ_ONLY = "tok-read-only-0123456789"


async def test_every_error_answer_behind_a_token_is_documented(
    installed_models, aiohttp_client, tmp_path
):
    """Without a token, with a wrong one, with one that may only read."""
    tokens = StaticTokens({EVERYTHING: [], READ_ONLY: ["read"]})
    executors = build_executors([spec("echo"), spec("trainer")], workers=0)
    app = create_app(
        executors,
        trainings=TrainingService(tmp_path / "state"),
        guard=Guard(auth=AuthPolicy(tokens=tokens)),
    )
    client = await aiohttp_client(app)
    v2, v3 = await documents(client)
    checked = set()
    for path, item in v2["paths"].items():
        url = path.replace("{uuid}", "0" * 32)
        for method, op2 in item.items():
            if method == "parameters":
                continue
            op3 = v3["paths"][path][method]
            for token in (None, "not-a-token", READ_ONLY):
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                resp = await client.request(method.upper(), url, headers=headers)
                if resp.status < 300:
                    continue
                status = str(resp.status)
                where = f"{method.upper()} {path} ({token}): {status}"
                assert resp.content_type == "application/json", where
                assert status in op2["responses"], where
                assert "application/json" in op2.get("produces", [JSON]), where
                assert set(op3["responses"][status]["content"]) == {JSON}, where
                checked.add((path, status))
    assert {("/metrics", "401"), ("/metrics", "403")} <= checked
    assert ("/v2/models/echo/predict/", "403") in checked
