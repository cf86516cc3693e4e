"""OpenID Connect access tokens (JWT), checked with the issuer's public keys.

The signature, issuer, expiry and (when configured) audience are checked by
PyJWT, a maintained JOSE library (the optional extra ``deepaas[oidc]``).
The keys (a JWKS) come from a file, from a URL, or from the issuer's
discovery document (``<issuer>/.well-known/openid-configuration``).  Keys
from a URL are fetched without blocking the server, kept for an hour, and
fetched again at once (at most every 30 s) when a token names a key that
is not known yet, as after the issuer rotates its keys.  One fetch runs at
a time, whatever the number of requests waiting for it.  While the issuer
cannot be reached, a token whose key is not known cannot be checked:
that is :class:`OidcKeysUnavailable` (a 503), never a refusal of the
token, and the keys are asked for again a second later, so that tokens
are accepted again as soon as the issuer is back.

A key that names no ``alg`` (as most issuers publish them) verifies every
configured algorithm that its type allows: RS* and PS* for an RSA key, the
ES* of its curve for an EC key, EdDSA for an Ed25519 key.  A verified
token is remembered until it expires, so that a client sending the same
token again costs a dictionary look-up, not a signature check.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["OidcError", "OidcKeysUnavailable", "OidcVerifier", "DEFAULT_ALGORITHMS"]

DEFAULT_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
ASYMMETRIC = frozenset(DEFAULT_ALGORITHMS)
#: The algorithms a key of each type (``kty``, and ``crv`` where it
#: matters) can verify.  HMAC (``oct`` keys) and ``none`` are never here.
_KEY_ALGORITHMS: dict[tuple[str, str | None], frozenset[str]] = {
    ("RSA", None): frozenset("RS256 RS384 RS512 PS256 PS384 PS512".split()),
    ("EC", "P-256"): frozenset({"ES256"}),
    ("EC", "P-384"): frozenset({"ES384"}),
    ("EC", "P-521"): frozenset({"ES512"}),
    ("OKP", "Ed25519"): frozenset({"EdDSA"}),
}
KEYS_MAX_AGE = 3600.0
#: After a fetch, a token naming an unknown key fetches again only this
#: much later, so that made-up key ids cannot make us hammer the issuer.
REFETCH_INTERVAL = 30.0
#: After a failed fetch, the next request tries again this much later.
RETRY_INTERVAL = 1.0
FETCH_TIMEOUT = 10.0
CACHE_SIZE = 4096


class OidcError(Exception):
    """A token that cannot be accepted; the message says why."""


class OidcKeysUnavailable(OidcError):
    """The issuer's keys cannot be had now (a 503, not the client's fault).

    ``retry_after`` is how many seconds a client should wait.
    """

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclasses.dataclass(frozen=True)
class _Key:
    """A public key of the issuer and the algorithms it may verify."""

    key: Any
    algorithms: frozenset[str]


def _import_jwt() -> Any:
    try:
        import jwt
    except ImportError:
        raise ValueError(
            "the --oidc-* options need PyJWT with its crypto extra: "
            "pip install 'deepaas[oidc]'"
        ) from None
    return jwt


class OidcVerifier:
    """Verifies access tokens issued by one OpenID Connect provider."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str | None = None,
        jwks_url: str | None = None,
        jwks_file: str | None = None,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        leeway: float = 30.0,
    ) -> None:
        self._jwt = _import_jwt()
        if not issuer:
            raise ValueError("--oidc-issuer is required for OIDC tokens")
        bad = [alg for alg in algorithms if alg not in ASYMMETRIC]
        if bad or not algorithms:
            raise ValueError(
                f"--oidc-algorithms takes public-key algorithms among "
                f"{', '.join(sorted(ASYMMETRIC))} (got {', '.join(bad) or 'none'})"
            )
        if jwks_url and jwks_file:
            raise ValueError("give --oidc-jwks-url or --oidc-jwks-file, not both")
        self.issuer = issuer
        self.audience = audience or None
        self.algorithms = list(algorithms)
        self.leeway = leeway
        self._jwks_url = jwks_url or None
        self._keys: dict[str | None, _Key] = {}
        self._fetched_at = -math.inf  # the last fetch that worked: never
        self._failed_at = -math.inf  # the last one that failed
        self._failure = ""  # why it failed, while it is the latest fetch
        self._fetch: asyncio.Task[None] | None = None  # the one in flight
        self._from_file = bool(jwks_file)
        self._verified: dict[bytes, tuple[dict[str, Any], float]] = {}
        if jwks_file:
            try:
                data = json.loads(Path(jwks_file).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(
                    f"cannot read the key set {jwks_file!r} (--oidc-jwks-file): "
                    f"{getattr(exc, 'strerror', None) or exc}"
                ) from None
            self._keys = self._parse_keys(data, jwks_file)

    def _parse_keys(self, data: Any, where: str) -> dict[str | None, _Key]:
        """The usable public keys of a JWKS, by key id.

        A key that cannot be used (unknown type or curve, an encryption
        key, a symmetric key) is left out, as other clients of the issuer
        do; a set with no usable key at all is an error.
        """
        jwt = self._jwt
        entries = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ValueError(f"the key set from {where} has no 'keys' list")
        keys: dict[str | None, _Key] = {}
        for fields in entries:
            if not isinstance(fields, dict) or fields.get("use", "sig") != "sig":
                continue
            kty = str(fields.get("kty"))
            allowed = _KEY_ALGORITHMS.get(
                (kty, None if kty == "RSA" else fields.get("crv")), frozenset()
            )
            if fields.get("alg"):  # the issuer bound the key to one algorithm
                allowed = allowed & {fields["alg"]}
            allowed = allowed & set(self.algorithms)
            if not allowed:
                continue
            try:
                jwk = jwt.PyJWK.from_dict(fields, algorithm=min(allowed))
            except (jwt.PyJWKError, jwt.exceptions.PyJWTError, TypeError):
                continue
            keys[fields.get("kid")] = _Key(jwk.key, allowed)
        if not keys:
            raise ValueError(
                f"no usable key in the key set from {where}: none is a public "
                f"signing key for {', '.join(self.algorithms)} (--oidc-algorithms)"
            )
        return keys

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, once its signature, issuer and dates are checked."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        cached = self._verified.get(digest)
        now = time.time()
        if cached is not None and cached[1] > now - self.leeway:
            return cached[0]
        jwt = self._jwt
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise OidcError(f"not a JWT ({exc})") from None
        key = await self._key_for(header.get("kid"))
        alg = header.get("alg")
        if alg not in key.algorithms:
            raise OidcError(
                f"the algorithm {alg!r} is not accepted for this key "
                f"(accepted: {', '.join(sorted(key.algorithms))})"
            )
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={
                    "require": ["exp", "iss"],
                    "verify_aud": self.audience is not None,
                },
            )
        except jwt.PyJWTError as exc:  # InvalidTokenError, a key that does not fit
            raise OidcError(str(exc) or type(exc).__name__) from None
        if len(self._verified) >= CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))
        self._verified[digest] = (claims, float(claims["exp"]))
        return claims

    async def _key_for(self, kid: str | None) -> _Key:
        if not self._from_file:
            now = time.monotonic()
            if kid not in self._keys and not (kid is None and len(self._keys) == 1):
                if self._failure and now - self._failed_at < RETRY_INTERVAL:
                    # Failed a moment ago: this token cannot be checked now.
                    raise self._unavailable(now)
                if now - self._fetched_at >= REFETCH_INTERVAL:
                    await self._refresh()
                    if self._failure and kid not in self._keys:
                        raise self._unavailable(time.monotonic())
            elif now - self._fetched_at > KEYS_MAX_AGE and self._fetch is None:
                # Old keys: fetch them anew meanwhile, but this token's key
                # is known and the issuer being down need not stop it.
                if now - self._failed_at >= RETRY_INTERVAL:
                    self._start_fetch()
        if kid in self._keys:
            return self._keys[kid]
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise OidcError(f"signed with a key the issuer does not list (kid {kid!r})")

    def _unavailable(self, now: float) -> OidcKeysUnavailable:
        wait = RETRY_INTERVAL - (now - self._failed_at)
        return OidcKeysUnavailable(
            f"cannot fetch the OIDC issuer's keys: {self._failure}",
            retry_after=max(1, math.ceil(wait)),
        )

    def _start_fetch(self) -> asyncio.Task[None]:
        if self._fetch is None:
            self._fetch = asyncio.get_running_loop().create_task(self._fetch_keys())
        return self._fetch

    async def _refresh(self) -> None:
        """Fetch the key set again, or wait for the fetch already running.

        Shielded: a client that goes away does not cancel the fetch that
        other requests wait for.
        """
        await asyncio.shield(self._start_fetch())

    async def _fetch_keys(self) -> None:
        """One fetch of the key set; its outcome is kept, never raised."""
        try:
            timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                if self._jwks_url is None:
                    self._jwks_url = await self._discover_jwks_url(session)
                data = await _get_json(session, self._jwks_url)
            keys = self._parse_keys(data, self._jwks_url)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            self._failure = str(exc) or type(exc).__name__
            self._failed_at = time.monotonic()
        else:
            self._keys = keys
            self._failure = ""
            self._fetched_at = time.monotonic()
        finally:
            self._fetch = None

    async def _discover_jwks_url(self, session: aiohttp.ClientSession) -> str:
        url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        document = await _get_json(session, url)
        if not isinstance(document, dict) or not document.get("jwks_uri"):
            raise ValueError(f"{url} names no jwks_uri")
        if document.get("issuer") not in (None, self.issuer):
            raise ValueError(
                f"{url} is for the issuer {document.get('issuer')!r}, "
                f"not {self.issuer!r} (--oidc-issuer)"
            )
        return str(document["jwks_uri"])


async def _get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        response.raise_for_status()
        return await response.json(content_type=None)
