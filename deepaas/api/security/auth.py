"""Optional authentication: static bearer tokens and OpenID Connect tokens.

Off unless tokens or an OIDC issuer are configured.  Every route has a
*kind*, declared in the route table (:mod:`deepaas.api.routes`):
``predict``, ``train`` (trainings and the
debug log), ``read`` (versions, model listings and metadata), ``docs``
(the API descriptions and Swagger UI) and the probes ``health``, ``ready``
and ``metrics``.  Kinds listed in ``open_kinds`` need no token; the others
need a valid token that the rules allow for that kind:

* a static token lists the kinds it may use (all when it lists none);
* an OIDC token must satisfy one of the kind's :class:`Requirement`s (a
  claim holding a value, e.g. ``scope`` holding ``deepaas:predict``), or the
  rules of ``*`` when the kind has none; with no rules at all, any valid
  token will do.

A missing or bad token is refused with 401 and ``WWW-Authenticate``; a
valid one that the rules refuse with 403: domain errors
(:mod:`deepaas.exceptions`) that :mod:`deepaas.api.errors` answers in JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from deepaas._kinds import KINDS
from deepaas.api.security.oidc import OidcError, OidcKeysUnavailable, OidcVerifier
from deepaas.exceptions import (
    AuthUnavailable,
    Forbidden,
    RequestRefused,
    Unauthorized,
)

__all__ = [
    "KINDS",
    "AuthPolicy",
    "Requirement",
    "StaticTokens",
    "parse_requirement",
]

TOKENS_ENV_VAR = "DEEPAAS_API_TOKENS"


@dataclasses.dataclass(frozen=True)
class Requirement:
    """A claim that must hold a value: ``scope`` holding ``deepaas:predict``.

    ``claim`` may name a nested claim with dots (``realm_access.roles``).
    A string claim is split on spaces (as ``scope`` is), a list is taken
    as it is.
    """

    claim: str
    value: str

    def holds(self, claims: Mapping[str, Any]) -> bool:
        found: Any = claims
        for part in self.claim.split("."):
            if not isinstance(found, Mapping) or part not in found:
                return False
            found = found[part]
        if isinstance(found, str):
            return self.value in found.split()
        if isinstance(found, list):
            return self.value in [str(item) for item in found]
        return str(found) == self.value

    def __str__(self) -> str:
        return f"{self.claim}={self.value}"


def parse_requirement(text: str) -> tuple[str, Requirement]:
    """``KIND:CLAIM=VALUE`` (``--oidc-require``) as (kind, requirement)."""
    kind, sep, rest = text.partition(":")
    claim, eq, value = rest.partition("=")
    kind = kind.strip()
    if not sep or not eq or not claim.strip() or not value.strip():
        raise ValueError(
            f"--oidc-require takes KIND:CLAIM=VALUE, e.g. predict:scope=deepaas "
            f"(got {text!r})"
        )
    if kind != "*" and kind not in KINDS:
        raise ValueError(
            f"--oidc-require: unknown kind {kind!r} in {text!r}; kinds: "
            f"{', '.join(KINDS)} or *"
        )
    return kind, Requirement(claim.strip(), value.strip())


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class StaticTokens:
    """Bearer tokens known in advance, each allowed some kinds of operation.

    Only digests are kept, and a token is compared with every known one in
    constant time (equal-length digests, no early exit).
    """

    def __init__(self, tokens: Mapping[str, Iterable[str]]) -> None:
        self._entries: list[tuple[bytes, frozenset[str]]] = []
        for token, kinds in tokens.items():
            allowed = frozenset(kinds) or frozenset(KINDS)
            unknown = allowed - set(KINDS)
            if unknown:
                raise ValueError(
                    f"unknown kind(s) {', '.join(sorted(unknown))} for a token; "
                    f"kinds: {', '.join(KINDS)}"
                )
            self._entries.append((_digest(token), allowed))

    def __len__(self) -> int:
        return len(self._entries)

    def kinds_of(self, token: str) -> frozenset[str] | None:
        """The kinds ``token`` may use, or None when it is not one of ours."""
        digest = _digest(token)
        found: frozenset[str] | None = None
        for known, kinds in self._entries:
            if hmac.compare_digest(digest, known):
                found = kinds
        return found

    @classmethod
    def load(
        cls, path: str | None, environ: Mapping[str, str] | None = None
    ) -> StaticTokens | None:
        """Tokens from ``path`` (``TOKEN [KIND,...]`` per line) and the environment.

        ``DEEPAAS_API_TOKENS`` holds tokens separated by commas or spaces,
        each allowed every kind.  None when neither gives a token.  A line
        of the file that cannot be read as written is a ValueError naming
        the file and line (see :func:`_parse_token_line`).
        """
        env = os.environ if environ is None else environ
        tokens: dict[str, set[str]] = {}
        for token in env.get(TOKENS_ENV_VAR, "").replace(",", " ").split():
            tokens[token] = set()
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(
                    f"cannot read the token file {path!r} (--auth-token-file): "
                    f"{getattr(exc, 'strerror', None) or exc}"
                ) from None
            count = len(tokens)
            seen: dict[str, int] = {}
            for number, line in enumerate(text.splitlines(), start=1):
                parsed = _parse_token_line(line, f"{path}:{number}")
                if parsed is None:
                    continue
                token, kinds = parsed
                if token in seen:
                    raise ValueError(
                        f"{path}:{number}: this token is already given on line "
                        f"{seen[token]} (--auth-token-file); give each token once"
                    )
                seen[token] = number
                tokens[token] = kinds
            if len(tokens) == count:
                raise ValueError(
                    f"the token file {path!r} (--auth-token-file) holds no token; "
                    "write one token per line, optionally followed by kinds "
                    "such as predict,read"
                )
        return cls(tokens) if tokens else None


#: A kind written longer than this may be a second token on the line: the
#: error does not repeat it (the message goes to a terminal or a log).
_SHOWN_KIND_LENGTH = 12


def _parse_token_line(line: str, where: str) -> tuple[str, set[str]] | None:
    """``TOKEN [KIND[,KIND...]] [# comment]`` as (token, kinds); None if blank.

    A ``#`` starts a comment only at the start of a word (at the start of
    the line or after whitespace): inside a token or a kind list it is part
    of it, so that a token holding ``#`` is never cut short into another,
    shorter token allowed every kind.  Kinds are separated by commas and/or
    whitespace; an empty or unknown kind is an error (``where`` names the
    file and line), never a token allowed more than was written.
    """
    words = line.split()
    for index, word in enumerate(words):
        if word.startswith("#"):
            words = words[:index]
            break
    if not words:
        return None
    token, rest = words[0], " ".join(words[1:])
    kinds: set[str] = set()
    if rest:
        for kind in re.split(r"\s*,\s*|\s+", rest):
            if not kind:
                raise ValueError(
                    f"{where}: an empty kind (two commas, or a comma at an end); "
                    f"write TOKEN KIND,KIND with kinds among {', '.join(KINDS)}"
                )
            if kind not in KINDS:
                shown = (
                    repr(kind)
                    if len(kind) <= _SHOWN_KIND_LENGTH
                    else "(not shown: it may be a token)"
                )
                raise ValueError(
                    f"{where}: unknown kind {shown}; kinds: {', '.join(KINDS)} "
                    "(one token per line, then its kinds)"
                )
            kinds.add(kind)
    return token, kinds


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _unauthorized(message: str, error: str = "") -> Unauthorized:
    challenge = 'Bearer realm="deepaas"'
    if error:
        detail = message.replace('"', "'")
        challenge += f', error="{error}", error_description="{detail}"'
    return Unauthorized(message, headers={"WWW-Authenticate": challenge})


@dataclasses.dataclass
class AuthPolicy:
    """Who may do what; :meth:`check` raises for a request it refuses."""

    tokens: StaticTokens | None = None
    oidc: OidcVerifier | None = None
    rules: dict[str, list[Requirement]] = dataclasses.field(default_factory=dict)
    open_kinds: frozenset[str] = frozenset({"health", "ready", "docs"})

    def __post_init__(self) -> None:
        unknown = set(self.open_kinds) - set(KINDS)
        if unknown:
            raise ValueError(
                f"--auth-open: unknown kind(s) {', '.join(sorted(unknown))}; "
                f"kinds: {', '.join(KINDS)}"
            )
        if self.rules and self.oidc is None:
            raise ValueError("--oidc-require needs --oidc-issuer")

    @property
    def enabled(self) -> bool:
        return self.tokens is not None or self.oidc is not None

    def is_open(self, kind: str) -> bool:
        """Whether ``kind`` needs no token."""
        return not self.enabled or kind in self.open_kinds

    async def allows(self, request: web.Request, kind: str) -> bool:
        """Whether ``request`` may do ``kind``: open, or its token allows it."""
        if self.is_open(kind):
            return True
        try:
            await self.check(request, kind)
        except RequestRefused:
            return False
        return True

    async def check(self, request: web.Request, kind: str) -> None:
        """Return when the request may go on; else raise its refusal.

        :class:`~deepaas.exceptions.Unauthorized` (401) for a missing or bad
        token, :class:`~deepaas.exceptions.Forbidden` (403) for one the
        rules refuse, :class:`~deepaas.exceptions.AuthUnavailable` (503)
        while the OIDC issuer's keys cannot be had.
        """
        token = _bearer(request)
        if token is None:
            raise _unauthorized(
                "this server requires a bearer token: send the header "
                "'Authorization: Bearer <token>'"
            )
        if self.tokens is not None:
            kinds = self.tokens.kinds_of(token)
            if kinds is not None:
                if kind not in kinds:
                    raise _forbidden(kind)
                return
        if self.oidc is None:
            raise _unauthorized("the bearer token is not valid", "invalid_token")
        try:
            claims = await self.oidc.verify(token)
        except OidcKeysUnavailable as exc:
            raise AuthUnavailable(str(exc), retry_after=exc.retry_after) from None
        except OidcError as exc:
            raise _unauthorized(
                f"the bearer token is not valid: {exc}", "invalid_token"
            ) from None
        rules = self.rules.get(kind) or self.rules.get("*")
        if not rules or any(rule.holds(claims) for rule in rules):
            return
        needed = " or ".join(str(rule) for rule in rules)
        raise _forbidden(kind, needed)


_KIND_TEXTS = {
    "predict": "predictions",
    "train": "trainings and the debug log",
    "read": "the model listings and metadata",
    "docs": "the API descriptions",
    "health": "/health",
    "ready": "/ready",
    "metrics": "/metrics",
}


def _forbidden(kind: str, needed: str = "") -> Forbidden:
    message = f"this token does not give access to {_KIND_TEXTS.get(kind, kind)}"
    if needed:
        message += f": that needs a token with {needed}"
    headers = {"WWW-Authenticate": 'Bearer realm="deepaas", error="insufficient_scope"'}
    return Forbidden(message, headers=headers)
