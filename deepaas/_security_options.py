"""deepaas-run's security options: allowed origins and hosts, tokens, OIDC.

Kept apart from :mod:`deepaas.config` so that each stays short; the options
are registered with the others (group ``security`` of ``--help``),
deepaas/cmd reads them into :class:`deepaas.api.security.settings.SecuritySettings`,
and :func:`deepaas.api.security.guard.guard_from_settings` turns those into checks.
See docs/security.md.
"""

from __future__ import annotations

from oslo_config import cfg

from deepaas._kinds import KINDS

__all__ = ["security_opts"]

#: deepaas.api.security.oidc.DEFAULT_ALGORITHMS (not imported: the options are read
#: by every tool, which need not import aiohttp).
_DEFAULT_ALGORITHMS = [
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
]

security_opts = [
    cfg.ListOpt(
        "allowed-origins",
        metavar="ORIGIN,...",
        default=[],
        help="Other origins (scheme://host[:port]) whose pages may call the "
        "API, e.g. the URL of a graphical front-end served elsewhere; they "
        "get CORS answers. State-changing requests (POST, PUT, PATCH, "
        "DELETE) from any other origin but the server's own are refused "
        "with 403; requests without an Origin header (scripts) always go "
        "through. '*' allows every origin.",
    ),
    cfg.ListOpt(
        "allowed-hosts",
        metavar="HOST,...",
        default=[],
        help="Host names this server answers for (guards against DNS "
        "rebinding); '.example.org' also allows its subdomains, '*' any. "
        "Requests for another Host are answered 421. Default: localhost, "
        "127.0.0.1 and ::1 when listening on a loopback address, else any "
        "host. /health, /ready and /metrics answer any Host.",
    ),
    cfg.StrOpt(
        "auth-token-file",
        metavar="PATH",
        help="Require a bearer token: a file of tokens, one per line, each "
        "optionally followed by the kinds of operation it may use (e.g. "
        "'s3cr3t predict,read'; none: every kind). A '#' at the start of a "
        "line or after a space starts a comment; a line with an unknown kind "
        "stops the start. Tokens may also be given in the environment "
        "variable DEEPAAS_API_TOKENS (comma-separated, every kind).",
    ),
    cfg.ListOpt(
        "auth-open",
        metavar="KIND,...",
        default=["health", "ready", "docs"],
        help="Kinds of operation that need no token when authentication is "
        f"on. Kinds: {', '.join(KINDS)} (docs: the API descriptions and the "
        "Swagger UI; read: versions, model listings and metadata; train: "
        "trainings and the debug log).",
    ),
    cfg.StrOpt(
        "oidc-issuer",
        metavar="URL",
        help="Accept OpenID Connect access tokens (JWT) of this issuer, e.g. "
        "https://aai.egi.eu/auth/realms/egi; its keys are found through its "
        "discovery document unless --oidc-jwks-url or --oidc-jwks-file is "
        "given. Needs pip install 'deepaas[oidc]'.",
    ),
    cfg.StrOpt(
        "oidc-audience",
        metavar="AUD",
        help="Audience (aud claim) tokens must be issued for; default: not checked.",
    ),
    cfg.StrOpt("oidc-jwks-url", metavar="URL", help="URL of the issuer's key set."),
    cfg.StrOpt(
        "oidc-jwks-file",
        metavar="PATH",
        help="File holding the issuer's key set (JWKS), read at start-up.",
    ),
    cfg.ListOpt(
        "oidc-algorithms",
        metavar="ALG,...",
        default=_DEFAULT_ALGORITHMS,
        help="Signature algorithms accepted (public-key ones only); an "
        "issuer's key that names no alg verifies those its type allows "
        "(RS*, PS* for RSA keys, the ES* of an EC key's curve, EdDSA).",
    ),
    cfg.FloatOpt(
        "oidc-leeway",
        default=30.0,
        min=0,
        help="Seconds of clock difference tolerated on exp and nbf.",
    ),
    cfg.MultiStrOpt(
        "oidc-require",
        metavar="KIND:CLAIM=VALUE",
        default=[],
        help="A claim an OIDC token needs for a kind of operation, e.g. "
        "predict:scope=deepaas:predict or train:groups=admins ('*' for every "
        "kind without rules of its own; CLAIM may be nested, as "
        "realm_access.roles). Repeat it: any one rule of a kind suffices. "
        "Without rules every valid token may do everything.",
    ),
]
