"""Typed settings of who may call the API (deepaas-run's security options).

``deepaas-run`` builds them once from its options (in :mod:`deepaas.cmd`);
:func:`deepaas.api.security.guard.guard_from_settings` turns them into the
checks.  A bad combination is refused when they are made, naming the option.
"""

from __future__ import annotations

import dataclasses

from deepaas.api.security.oidc import DEFAULT_ALGORITHMS

#: The kinds of operation answered without a token unless told otherwise.
DEFAULT_OPEN_KINDS = ("health", "ready", "docs")


@dataclasses.dataclass(frozen=True)
class SecuritySettings:
    """Who may call the API: Host and Origin checks, tokens, OIDC.

    ``allowed_hosts`` empty means the default for ``listen_ip`` (loopback
    names when listening on loopback, else any host).
    """

    listen_ip: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    auth_token_file: str | None = None
    auth_open: tuple[str, ...] = DEFAULT_OPEN_KINDS
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_jwks_file: str | None = None
    oidc_algorithms: tuple[str, ...] = tuple(DEFAULT_ALGORITHMS)
    oidc_leeway: float = 30.0
    oidc_require: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.oidc_issuer and (
            self.oidc_jwks_url or self.oidc_jwks_file or self.oidc_audience
        ):
            raise ValueError("the --oidc-* options need --oidc-issuer")


__all__ = ["DEFAULT_OPEN_KINDS", "SecuritySettings"]
