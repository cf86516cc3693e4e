"""Static bearer tokens: who may do what, and what the API descriptions declare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from deepaas.api import create_app
from deepaas.api.routes import ROUTES
from deepaas.api.security.auth import (
    KINDS,
    AuthPolicy,
    StaticTokens,
    parse_requirement,
)
from deepaas.api.security.guard import Guard
from deepaas.engine.build import build_executors
from deepaas.model.loading import ModelSpec
from deepaas.training import TrainingService
from tests.conftest import spec

PREDICT = "/v2/models/echo/predict/"
TRAIN = "/v2/models/trainer/train/"
EVERYTHING = "tok-everything-0123456789"
PREDICT_ONLY = "tok-predict-0123456789"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def serve(installed_models: Any, aiohttp_client: Any, tmp_path: Path) -> Any:
    async def make(auth: AuthPolicy | None, trainings: bool = False) -> TestClient:
        executors = build_executors([spec("echo"), spec("trainer")], workers=0)
        service = TrainingService(tmp_path / "state") if trainings else None
        app = create_app(executors, trainings=service, guard=Guard(auth=auth))
        return await aiohttp_client(app)

    return make


def static(**open_kinds: Any) -> AuthPolicy:
    tokens = StaticTokens({EVERYTHING: [], PREDICT_ONLY: ["predict", "read"]})
    return AuthPolicy(tokens=tokens, **open_kinds)


async def test_without_a_token_nothing_but_the_open_kinds_answers(serve: Any) -> None:
    client = await serve(static(), trainings=True)
    for method, path in (
        ("POST", PREDICT),
        ("GET", "/v2/models/"),
        ("GET", "/v2/models/echo/"),
        ("GET", "/"),
        ("POST", TRAIN),
        ("GET", TRAIN),
        ("DELETE", f"{TRAIN}{'0' * 32}"),
        ("GET", "/v2/debug/"),
    ):
        resp = await client.request(method, path)
        assert resp.status == 401, (method, path)
        assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="deepaas"')
        assert "Authorization: Bearer" in (await resp.json())["message"]
    assert await (await client.get(TRAIN, headers=bearer(EVERYTHING))).json() == []
    # Open by default: the probes and the documentation (the Swagger UI
    # must load before the user can type a token into it).
    for path in ("/health", "/swagger.json", "/openapi.json", "/api"):
        assert (await client.get(path)).status == 200, path
    assert (await client.get("/ready")).status in (200, 503)


@pytest.mark.slow
async def test_a_bad_token_is_401_and_a_token_without_the_kind_is_403(
    serve: Any,
) -> None:
    client = await serve(static(), trainings=True)
    for header in ("Bearer nope", "Basic dXNlcjpwYXNz", "Bearer", PREDICT_ONLY):
        resp = await client.post(PREDICT, json={}, headers={"Authorization": header})
        assert resp.status == 401, header
    resp = await client.post(PREDICT, json={}, headers=bearer("nope"))
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert (await client.post(PREDICT, json={}, headers=bearer(PREDICT_ONLY))).ok
    assert (await client.get("/v2/models/", headers=bearer(PREDICT_ONLY))).ok
    resp = await client.post(
        TRAIN, params={"seconds": "0"}, headers=bearer(PREDICT_ONLY)
    )
    assert resp.status == 403
    assert "insufficient_scope" in resp.headers["WWW-Authenticate"]
    assert "train" in (await resp.json())["message"]
    resp = await client.post(TRAIN, params={"seconds": "0"}, headers=bearer(EVERYTHING))
    assert resp.status == 200, await resp.text()
    # Any scheme spelling of "bearer" is the same (RFC 6750 says case-insensitive).
    resp = await client.post(
        PREDICT, json={}, headers={"Authorization": f"bearer {EVERYTHING}"}
    )
    assert resp.ok


async def test_the_open_kinds_are_an_option(serve: Any) -> None:
    client = await serve(static())
    assert (await client.get("/metrics")).status == 401  # closed by default
    assert (await client.get("/metrics", headers=bearer(EVERYTHING))).ok
    client = await serve(static(open_kinds=frozenset({"metrics"})))
    assert (await client.get("/metrics")).ok
    assert (await client.get("/ready")).status == 401
    client = await serve(static(open_kinds=frozenset({"read"})))
    assert (await client.get("/v2/models/")).ok
    assert (await client.get("/health")).status == 401
    assert (await client.get("/swagger.json")).status == 401
    assert (await client.post(PREDICT, json={})).status == 401


async def test_open_probes_show_details_only_to_a_token_that_may_read(
    serve: Any,
) -> None:
    tokens = StaticTokens(
        {EVERYTHING: [], PREDICT_ONLY: ["predict", "read"], "tok-probe": ["metrics"]}
    )
    client = await serve(AuthPolicy(tokens=tokens))
    for headers in ({}, bearer("tok-probe"), bearer("nope"), {"Authorization": "x"}):
        resp = await client.get("/health", headers=headers)
        assert resp.status == 200
        assert await resp.json() == {"status": "alive"}, headers
        resp = await client.get("/ready", headers=headers)
        body = await resp.json()
        assert list(body) == ["status"], (headers, body)
        if resp.status == 503:
            assert resp.headers["Retry-After"]
    for token in (EVERYTHING, PREDICT_ONLY):
        body = await (await client.get("/health", headers=bearer(token))).json()
        assert set(body) == {"status", "models"} and "echo" in body["models"]
        body = await (await client.get("/ready", headers=bearer(token))).json()
        assert set(body) == {"status", "models"}

    # With the model listings public, so are the details.
    client = await serve(
        AuthPolicy(tokens=tokens, open_kinds=frozenset({"health", "ready", "read"}))
    )
    assert "models" in await (await client.get("/health")).json()


async def test_without_authentication_nothing_changes(serve: Any) -> None:
    client = await serve(None)
    assert (await client.post(PREDICT, json={})).ok
    assert "models" in await (await client.get("/health")).json()
    assert "models" in await (await client.get("/ready")).json()
    spec_v2 = await (await client.get("/swagger.json")).json()
    assert "securityDefinitions" not in spec_v2


async def test_the_descriptions_declare_the_bearer_scheme(serve: Any) -> None:
    client = await serve(static())
    v2 = await (await client.get("/swagger.json")).json()
    assert v2["securityDefinitions"]["bearer"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": v2["securityDefinitions"]["bearer"]["description"],
    }
    assert v2["paths"][PREDICT]["post"]["security"] == [{"bearer": []}]
    assert "401" in v2["paths"][PREDICT]["post"]["responses"]
    assert v2["paths"]["/health"]["get"]["security"] == []
    train_item = v2["paths"]["/v2/models/trainer/train/{uuid}"]
    assert train_item["delete"]["security"] == [{"bearer": []}]
    v3 = await (await client.get("/openapi.json")).json()
    assert v3["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert v3["paths"][PREDICT]["post"]["security"] == [{"bearer": []}]

    from openapi_spec_validator import validate

    validate(v2)
    validate(v3)


def test_tokens_come_from_a_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# who may do what\nalpha predict,read  # a client\n\nbeta\n")
    tokens = StaticTokens.load(str(path), {"DEEPAAS_API_TOKENS": "gamma, delta"})
    assert tokens is not None and len(tokens) == 4
    assert tokens.kinds_of("alpha") == {"predict", "read"}
    assert tokens.kinds_of("beta") == tokens.kinds_of("gamma")
    assert "train" in (tokens.kinds_of("delta") or ())
    assert tokens.kinds_of("alph") is None
    assert StaticTokens.load(None, {}) is None

    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no token"):
        StaticTokens.load(str(path), {})
    with pytest.raises(ValueError, match="cannot read the token file"):
        StaticTokens.load(str(tmp_path / "missing"), {})
    path.write_text("alpha predcit\n")
    with pytest.raises(ValueError, match="predcit"):
        StaticTokens.load(str(path), {})


def test_a_hash_inside_a_token_is_part_of_it_not_a_comment(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(
        "HASH#token-rest read\n"
        "tab\tpredict\t# a comment after a tab\n"
        "spaced predict , read   # kinds may be spaced\n"
        "  indented train  \n"
        "# a whole-line comment: notcomment predict\n"
        "  # an indented one\n"
        "operator # every kind: nothing but a comment follows the token\n"
    )
    tokens = StaticTokens.load(str(path), {})
    assert tokens is not None and len(tokens) == 5
    assert tokens.kinds_of("HASH#token-rest") == {"read"}
    assert tokens.kinds_of("HASH") is None
    assert tokens.kinds_of("tab") == {"predict"}
    assert tokens.kinds_of("spaced") == {"predict", "read"}
    assert tokens.kinds_of("indented") == {"train"}
    assert tokens.kinds_of("notcomment") is None
    assert tokens.kinds_of("operator") == frozenset(KINDS)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("tok predict#read", "unknown kind 'predict#read'"),
        ("tok read#,train,metrics", "unknown kind 'read#'"),
        ("tok predict,,read", "an empty kind"),
        ("tok predict,", "an empty kind"),
        ("tok ,", "an empty kind"),
        ("tok , # every kind?", "an empty kind"),
        ("tok Predict", "unknown kind 'Predict'"),
        ("tok all", "unknown kind 'all'"),
        ("tok *", "unknown kind '*'"),
        # Two tokens on one line: the second is not echoed (it is a secret).
        ("tok another-token-0123456789", "unknown kind (not shown"),
    ],
)
def test_a_line_that_would_widen_rights_stops_the_start(
    tmp_path: Path, line: str, words: str
) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"good read\n\n{line}\n")
    with pytest.raises(ValueError) as caught:
        StaticTokens.load(str(path), {})
    message = str(caught.value)
    assert message.startswith(f"{path}:3: "), message
    assert words in message, message
    assert "\n" not in message
    assert "another-token" not in message


def test_a_token_given_twice_in_the_file_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("tok predict\nother\ntok\n")
    with pytest.raises(ValueError, match=r":3: .*already given on line 1"):
        StaticTokens.load(str(path), {})


def test_rules_and_kinds_are_validated() -> None:
    assert parse_requirement("predict:scope=deepaas:predict")[1].value == (
        "deepaas:predict"
    )
    for bad in ("predict", "predict:scope", "nope:scope=x", "predict:=x"):
        with pytest.raises(ValueError, match="oidc-require"):
            parse_requirement(bad)
    with pytest.raises(ValueError, match="auth-open"):
        AuthPolicy(open_kinds=frozenset({"helth"}))


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/v2/models/echo/predict/", "predict"),
        ("POST", "/v2/models/{name}/predict/", "predict"),
        ("GET", "/v2/models/{name}/", "read"),  # also for a model named "train"
        ("POST", "/v2/models/train/predict/", "predict"),
        ("DELETE", "/v2/models/{name}/train/{uuid:[0-9a-fA-F]{32}}", "train"),
        ("GET", "/v2/models/{name}/train/{uuid:[0-9a-fA-F]{32}}/logs", "train"),
        ("GET", "/v2/debug/", "train"),
        ("GET", "/metrics", "metrics"),
        ("GET", "/api", "docs"),
        ("GET", "/", "read"),
    ],
)
def test_route_kinds(installed_models: Any, method: str, path: str, kind: str) -> None:
    """The kind each route declares, on a server with a model named "train"."""
    named_train = ModelSpec("train", spec("echo").target, spec("echo").namespace)
    executors = build_executors([spec("echo"), named_train], workers=0)
    route = create_app(executors)[ROUTES].find(method, path)
    assert route is not None
    assert route.kind == kind
