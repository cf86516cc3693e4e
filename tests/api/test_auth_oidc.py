"""OpenID Connect access tokens, signed with keys made here (no network).

The key sets are given as a file, as a URL and through the issuer's
discovery document, the last two served by an aiohttp server on loopback.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from deepaas.api import create_app
from deepaas.api.auth import AuthPolicy, parse_requirement
from deepaas.api.guard import Guard
from deepaas.api.oidc import OidcVerifier
from deepaas.engine.executors import build_executors
from tests.conftest import spec

PREDICT = "/v2/models/echo/predict/"
TRAIN = "/v2/models/trainer/train/"
ISSUER = "https://aai.example.org/realms/research"


class Issuer:
    """A key pair per key id, and tokens signed with them."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.add(
            "rsa-1", rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )

    def add(self, kid: str, private_key: Any) -> None:
        self.keys[kid] = private_key

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, private in self.keys.items():
            keys.append({**_public_jwk(private), "kid": kid, "use": "sig"})
        return {"keys": keys}

    def token(self, kid: str = "rsa-1", **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "sub": "alice", "iat": now, "exp": now + 600}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        private = self.keys[kid]
        alg = "ES256" if isinstance(private, ec.EllipticCurvePrivateKey) else "RS256"
        return jwt.encode(payload, private, algorithm=alg, headers={"kid": kid})


def _public_jwk(private: Any) -> dict[str, Any]:
    if isinstance(private, ec.EllipticCurvePrivateKey):
        algorithm: Any = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256)
    else:
        algorithm = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256)
    return json.loads(algorithm.to_jwk(private.public_key()))


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def jwks_file(issuer: Issuer, tmp_path: Path) -> str:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(issuer.jwks()))
    return str(path)


@pytest.fixture
def serve(installed_models: Any, aiohttp_client: Any) -> Any:
    async def make(verifier: OidcVerifier, *rules: str) -> TestClient:
        parsed: dict[str, list[Any]] = {}
        for text in rules:
            kind, requirement = parse_requirement(text)
            parsed.setdefault(kind, []).append(requirement)
        auth = AuthPolicy(oidc=verifier, rules=parsed)
        executors = build_executors([spec("echo"), spec("trainer")], workers=0)
        return await aiohttp_client(create_app(executors, guard=Guard(auth=auth)))

    return make


class IdentityProvider:
    """The issuer's discovery document and key set, over loopback HTTP."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.fetches = 0
        self.down = False
        self.server: TestServer | None = None

    async def _jwks(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.down:
            raise web.HTTPServiceUnavailable()
        return web.json_response(self.issuer.jwks())

    async def _discovery(self, request: web.Request) -> web.Response:
        """``/<realm>/.well-known/...`` names the issuer ``<server>/<realm>``.

        The realm ``liar`` names another issuer.
        """
        realm = request.match_info["realm"]
        named = ISSUER if realm == "liar" else self.url(f"/{realm}")
        return web.json_response({"issuer": named, "jwks_uri": self.url("/certs")})

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(path))


@pytest.fixture
async def provider(issuer: Issuer) -> AsyncIterator[IdentityProvider]:
    idp = IdentityProvider(issuer)
    app = web.Application()
    app.router.add_get("/certs", idp._jwks)
    app.router.add_get("/{realm}/.well-known/openid-configuration", idp._discovery)
    idp.server = TestServer(app, host="127.0.0.1")
    await idp.server.start_server()
    try:
        yield idp
    finally:
        await idp.server.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_token_of_the_issuer_is_accepted_and_others_are_not(
    serve: Any, issuer: Issuer, jwks_file: str
) -> None:
    verifier = OidcVerifier(issuer=ISSUER, audience="deepaas", jwks_file=jwks_file)
    client = await serve(verifier)
    good = issuer.token(aud="deepaas")
    resp = await client.post(PREDICT, json={}, headers=bearer(good))
    assert resp.status == 200, await resp.text()

    stranger = Issuer()  # the same key id, another key
    bad = {
        "expired": issuer.token(aud="deepaas", exp=int(time.time()) - 3600),
        "Issuer": issuer.token(aud="deepaas", iss="https://elsewhere.example"),
        "Audience": issuer.token(aud="another-service"),
        "aud": issuer.token(aud=None),
        "exp": issuer.token(aud="deepaas", exp=None),
        "Signature": stranger.token(aud="deepaas"),
        "kid": jwt.encode(
            {"iss": ISSUER, "aud": "deepaas", "exp": int(time.time()) + 60},
            issuer.keys["rsa-1"],
            algorithm="RS256",
            headers={"kid": "rsa-9"},
        ),
        "not a JWT": "not-a-jwt",
        # A symmetric algorithm is never accepted.
        "alg": jwt.encode(
            {"iss": ISSUER, "aud": "deepaas", "exp": int(time.time()) + 60},
            "a shared secret of at least 32 bytes",
            algorithm="HS256",
            headers={"kid": "rsa-1"},
        ),
    }
    for why, token in bad.items():
        resp = await client.post(PREDICT, json={}, headers=bearer(token))
        assert resp.status == 401, why
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"], why
        body = await resp.json()
        assert body["message"].startswith("the bearer token is not valid"), why


async def test_rules_tell_predict_from_train(
    serve: Any, issuer: Issuer, jwks_file: str
) -> None:
    verifier = OidcVerifier(issuer=ISSUER, jwks_file=jwks_file)
    client = await serve(
        verifier,
        "predict:scope=deepaas:predict",
        "train:groups=admins",
        "train:realm_access.roles=trainer",
        "*:scope=openid",
    )
    predictor = issuer.token(scope="openid deepaas:predict")
    admin = issuer.token(scope="openid", groups=["users", "admins"])
    role = issuer.token(realm_access={"roles": ["trainer"]})
    nobody = issuer.token(scope="email", groups=["users"])

    async def status(method: str, path: str, token: str) -> int:
        kwargs: dict[str, Any] = {"json": {}} if method == "POST" else {}
        return (
            await client.request(method, path, headers=bearer(token), **kwargs)
        ).status

    assert await status("POST", PREDICT, predictor) == 200
    assert await status("GET", TRAIN, predictor) == 403
    assert await status("POST", PREDICT, admin) == 403
    assert await status("GET", TRAIN, admin) != 403  # no training service: 402/404
    assert await status("GET", TRAIN, role) != 403
    assert await status("GET", "/v2/models/", admin) == 200  # read: the * rule
    assert await status("GET", "/v2/models/", nobody) == 403
    resp = await client.post(PREDICT, json={}, headers=bearer(nobody))
    body = await resp.json()
    assert "scope=deepaas:predict" in body["message"]
    assert "insufficient_scope" in resp.headers["WWW-Authenticate"]


async def test_keys_from_a_url_are_fetched_once_and_again_for_a_new_key(
    serve: Any, issuer: Issuer, provider: IdentityProvider
) -> None:
    verifier = OidcVerifier(issuer=ISSUER, jwks_url=provider.url("/certs"))
    client = await serve(verifier)
    for n in range(3):
        token = issuer.token(jti=str(n))
        assert (await client.post(PREDICT, json={}, headers=bearer(token))).ok
    assert provider.fetches == 1

    # The issuer rotates in an EC key: the unknown key id fetches the set again.
    issuer.add("ec-2", ec.generate_private_key(ec.SECP256R1()))
    try:
        resp = await client.post(PREDICT, json={}, headers=bearer(issuer.token("ec-2")))
    finally:
        del issuer.keys["ec-2"]
    # Fetched again only if the last fetch is old enough: it is not, so this
    # key is refused until then, without asking the issuer on every request.
    assert resp.status == 401
    assert provider.fetches == 1
    verifier._fetched_at -= 60  # as if the keys were fetched a minute ago
    issuer.add("ec-2", ec.generate_private_key(ec.SECP256R1()))
    try:
        token = issuer.token("ec-2")
        assert (await client.post(PREDICT, json={}, headers=bearer(token))).ok
    finally:
        del issuer.keys["ec-2"]
    assert provider.fetches == 2


async def test_keys_are_discovered_from_the_issuer(
    serve: Any, issuer: Issuer, provider: IdentityProvider
) -> None:
    realm = provider.url("/realm")
    client = await serve(OidcVerifier(issuer=realm))
    resp = await client.post(PREDICT, json={}, headers=bearer(issuer.token(iss=realm)))
    assert resp.status == 200, await resp.text()
    assert provider.fetches == 1

    # A discovery document that names another issuer is not trusted.
    liar = provider.url("/liar")
    client = await serve(OidcVerifier(issuer=liar))
    resp = await client.post(PREDICT, json={}, headers=bearer(issuer.token(iss=liar)))
    assert resp.status == 503
    assert "is for the issuer" in (await resp.json())["message"]


async def test_an_issuer_that_cannot_be_reached_is_a_503(
    serve: Any, issuer: Issuer, provider: IdentityProvider
) -> None:
    provider.down = True
    verifier = OidcVerifier(issuer=ISSUER, jwks_url=provider.url("/certs"))
    client = await serve(verifier)
    resp = await client.post(PREDICT, json={}, headers=bearer(issuer.token()))
    assert resp.status == 503
    assert "keys" in (await resp.json())["message"]
    assert resp.headers["Retry-After"]


def test_bad_oidc_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="public-key"):
        OidcVerifier(issuer=ISSUER, jwks_url="http://x", algorithms=["HS256"])
    with pytest.raises(ValueError, match="not both"):
        OidcVerifier(issuer=ISSUER, jwks_url="http://x", jwks_file="y")
    with pytest.raises(ValueError, match="oidc-jwks-file"):
        OidcVerifier(issuer=ISSUER, jwks_file=str(tmp_path / "missing.json"))
    (tmp_path / "empty.json").write_text('{"keys": []}')
    with pytest.raises(ValueError, match="no usable key"):
        OidcVerifier(issuer=ISSUER, jwks_file=str(tmp_path / "empty.json"))
