"""OpenID Connect access tokens (JWT), checked with the issuer's public keys.

The signature, issuer, expiry and (when configured) audience are checked by
PyJWT, a maintained JOSE library (the optional extra ``deepaas[oidc]``).
The keys (a JWKS) come from a file, from a URL, or from the issuer's
discovery document (``<issuer>/.well-known/openid-configuration``).  Keys
from a URL are fetched without blocking the server, kept for an hour, and
fetched again at once (at most every 30 s) when a token names a key that
is not known yet, as after the issuer rotates its keys.  A verified token
is remembered until it expires, so that a client sending the same token
again costs a dictionary look-up, not a signature check.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["OidcError", "OidcKeysUnavailable", "OidcVerifier", "DEFAULT_ALGORITHMS"]

DEFAULT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
ASYMMETRIC = frozenset(
    "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA".split()
)
KEYS_MAX_AGE = 3600.0
REFETCH_INTERVAL = 30.0
FETCH_TIMEOUT = 10.0
CACHE_SIZE = 4096


class OidcError(Exception):
    """A token that cannot be accepted; the message says why."""


class OidcKeysUnavailable(OidcError):
    """The issuer's keys cannot be had now (a 503, not the client's fault)."""


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
        self._discover = not jwks_url and not jwks_file
        self._keys: dict[str | None, Any] = {}
        self._fetched_at = -float("inf")  # never
        self._from_file = bool(jwks_file)
        self._fetch_lock = asyncio.Lock()
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

    def _parse_keys(self, data: Any, where: str) -> dict[str | None, Any]:
        try:
            key_set = self._jwt.PyJWKSet.from_dict(data)
        except (self._jwt.PyJWKSetError, self._jwt.PyJWKError, TypeError) as exc:
            raise ValueError(
                f"no usable key in the key set from {where}: {exc}"
            ) from None
        return {key.key_id: key for key in key_set.keys}

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
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={
                    "require": ["exp", "iss"],
                    "verify_aud": self.audience is not None,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise OidcError(str(exc) or type(exc).__name__) from None
        if len(self._verified) >= CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))
        self._verified[digest] = (claims, float(claims["exp"]))
        return claims

    async def _key_for(self, kid: str | None) -> Any:
        stale = time.monotonic() - self._fetched_at > KEYS_MAX_AGE
        if not self._from_file and (stale or kid not in self._keys):
            await self._refresh(stale_only=kid in self._keys)
        if kid in self._keys:
            return self._keys[kid]
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise OidcError(f"signed with a key the issuer does not list (kid {kid!r})")

    async def _refresh(self, *, stale_only: bool) -> None:
        """Fetch the key set again, unless another request just did."""
        async with self._fetch_lock:
            age = time.monotonic() - self._fetched_at
            if age < REFETCH_INTERVAL or (stale_only and age < KEYS_MAX_AGE):
                return
            try:
                timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    if self._jwks_url is None:
                        self._jwks_url = await self._discover_jwks_url(session)
                    data = await _get_json(session, self._jwks_url)
                keys = self._parse_keys(data, self._jwks_url)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                self._fetched_at = time.monotonic() - REFETCH_INTERVAL / 2
                if self._keys:
                    return  # keep the keys we had; try again later
                raise OidcKeysUnavailable(
                    f"cannot fetch the OIDC issuer's keys: {exc or type(exc).__name__}"
                ) from None
            self._keys = keys
            self._fetched_at = time.monotonic()

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
