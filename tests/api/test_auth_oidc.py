"""OpenID Connect access tokens, signed with keys made here (no network).

The key sets are given as a file, as a URL and through the issuer's
discovery document, the last two served by an aiohttp server on loopback.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from deepaas.api import create_app
from deepaas.api.security.auth import AuthPolicy, parse_requirement
from deepaas.api.security.guard import Guard
from deepaas.api.security.oidc import OidcVerifier
from deepaas.engine.build import build_executors
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

    async def start(self, port: int = 0) -> None:
        """Serve on ``port`` (0: any free one), e.g. the one it had before."""
        app = web.Application()
        app.router.add_get("/certs", self._jwks)
        app.router.add_get("/{realm}/.well-known/openid-configuration", self._discovery)
        self.server = TestServer(app, host="127.0.0.1", port=port)
        await self.server.start_server()

    async def stop(self) -> int:
        """Stop listening (connections are refused); the port it had."""
        assert self.server is not None and self.server.port is not None
        port = self.server.port
        await self.server.close()
        return port


@pytest.fixture
async def provider(issuer: Issuer) -> AsyncIterator[IdentityProvider]:
    idp = IdentityProvider(issuer)
    await idp.start()
    try:
        yield idp
    finally:
        assert idp.server is not None
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


async def test_an_issuer_that_goes_down_is_a_503_until_it_is_back(
    serve: Any, issuer: Issuer, provider: IdentityProvider
) -> None:
    verifier = OidcVerifier(issuer=ISSUER, jwks_url=provider.url("/certs"))
    client = await serve(verifier)
    token = issuer.token()
    # The issuer answers, but with an error: no key is known, so 503.
    provider.down = True
    resp = await client.post(PREDICT, json={}, headers=bearer(token))
    assert resp.status == 503, await resp.text()
    assert int(resp.headers["Retry-After"]) >= 1
    # A flood meanwhile asks the issuer at most once a second, one at a time.
    fetches = provider.fetches
    started = time.monotonic()
    answers = await asyncio.gather(
        *(client.post(PREDICT, json={}, headers=bearer(token)) for _ in range(50))
    )
    assert {resp.status for resp in answers} == {503}
    assert provider.fetches - fetches <= 1 + (time.monotonic() - started)

    # Now nothing listens there any more: still 503, never a 401.
    port = await provider.stop()
    for _ in range(3):
        resp = await client.post(PREDICT, json={}, headers=bearer(token))
        assert resp.status == 503, await resp.text()
        assert resp.headers["Retry-After"]
        await asyncio.sleep(0.6)

    # It comes back: the same token is accepted within about a second.
    provider.down = False
    await provider.start(port)
    back = time.monotonic()
    while True:
        resp = await client.post(PREDICT, json={}, headers=bearer(token))
        if resp.status == 200:
            break
        assert resp.status == 503, await resp.text()
        assert time.monotonic() - back < 2.0, "still refused 2 s after the issuer"
        await asyncio.sleep(0.05)
    assert time.monotonic() - back < 2.0


async def test_a_token_for_a_new_key_while_the_issuer_is_down_is_a_503(
    serve: Any, issuer: Issuer, provider: IdentityProvider
) -> None:
    verifier = OidcVerifier(issuer=ISSUER, jwks_url=provider.url("/certs"))
    client = await serve(verifier)
    assert (await client.post(PREDICT, json={}, headers=bearer(issuer.token()))).ok
    await provider.stop()
    verifier._fetched_at -= 60  # as if the keys were fetched a minute ago
    # Known keys keep working while the issuer is away...
    resp = await client.post(PREDICT, json={}, headers=bearer(issuer.token(jti="2")))
    assert resp.status == 200
    # ...but a key it may have rotated in cannot be checked: 503, not 401.
    issuer.add("rsa-2", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    try:
        token = issuer.token("rsa-2")
        resp = await client.post(PREDICT, json={}, headers=bearer(token))
    finally:
        del issuer.keys["rsa-2"]
    assert resp.status == 503, await resp.text()
    assert resp.headers["Retry-After"]


def _signed(private: Any, alg: str, kid: str) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "alice", "exp": now + 600}
    return jwt.encode(claims, private, algorithm=alg, headers={"kid": kid})


async def test_every_algorithm_of_the_key_type_is_accepted(
    serve: Any, tmp_path: Path
) -> None:
    """Keys without an ``alg`` (as many issuers publish them) verify every
    algorithm their type allows, and only those."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p256 = ec.generate_private_key(ec.SECP256R1())
    p384 = ec.generate_private_key(ec.SECP384R1())
    p521 = ec.generate_private_key(ec.SECP521R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    keys = {"rsa": rsa_key, "p256": p256, "p384": p384, "p521": p521}
    jwks = [{**_public_jwk(k), "kid": kid} for kid, k in keys.items()]
    ed_jwk = jwt.algorithms.OKPAlgorithm().to_jwk(ed.public_key(), as_dict=True)
    jwks.append({**ed_jwk, "kid": "ed"})
    assert not any("alg" in key for key in jwks)
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": jwks}))
    client = await serve(OidcVerifier(issuer=ISSUER, jwks_file=str(path)))

    async def status(token: str) -> int:
        return (await client.post(PREDICT, json={}, headers=bearer(token))).status

    for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"):
        assert await status(_signed(rsa_key, alg, "rsa")) == 200, alg
    assert await status(_signed(p256, "ES256", "p256")) == 200
    assert await status(_signed(p384, "ES384", "p384")) == 200
    assert await status(_signed(p521, "ES512", "p521")) == 200
    assert await status(_signed(ed, "EdDSA", "ed")) == 200

    # An algorithm of another key type or curve, HMAC with the public key
    # as its secret, and no signature at all: refused.
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hmac_token = _forged_hs256(public_pem, "rsa")
    unsigned = jwt.encode(
        {"iss": ISSUER, "exp": int(time.time()) + 600},
        None,
        algorithm="none",
        headers={"kid": "rsa"},
    )
    for why, token in {
        "ES256 naming a P-384 key": _signed(p256, "ES256", "p384"),
        "RS256 naming an EC key": _signed(rsa_key, "RS256", "p256"),
        "EdDSA naming an RSA key": _signed(ed, "EdDSA", "rsa"),
        "HS256 keyed with the RSA public key": hmac_token,
        "none": unsigned,
    }.items():
        resp = await client.post(PREDICT, json={}, headers=bearer(token))
        assert resp.status == 401, why
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"], why


async def test_a_key_with_an_alg_and_the_configured_algorithms_are_kept(
    serve: Any, tmp_path: Path
) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**_public_jwk(rsa_key), "kid": "rsa", "alg": "PS256"}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    client = await serve(OidcVerifier(issuer=ISSUER, jwks_file=str(path)))
    for alg, expected in (("PS256", 200), ("RS256", 401), ("PS512", 401)):
        token = _signed(rsa_key, alg, "rsa")
        resp = await client.post(PREDICT, json={}, headers=bearer(token))
        assert resp.status == expected, alg

    del jwk["alg"]
    path.write_text(json.dumps({"keys": [jwk]}))
    verifier = OidcVerifier(issuer=ISSUER, jwks_file=str(path), algorithms=["RS256"])
    client = await serve(verifier)
    for alg, expected in (("RS256", 200), ("RS512", 401), ("PS256", 401)):
        token = _signed(rsa_key, alg, "rsa")
        resp = await client.post(PREDICT, json={}, headers=bearer(token))
        assert resp.status == expected, alg


def _forged_hs256(secret: bytes, kid: str) -> str:
    """A token "signed" with HMAC keyed by the issuer's public key.

    PyJWT refuses to sign with a PEM key as an HMAC secret, so the token is
    put together by hand, as an attacker would.
    """
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    claims = {"iss": ISSUER, "sub": "mallory", "exp": int(time.time()) + 600}
    payload = b64(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


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
