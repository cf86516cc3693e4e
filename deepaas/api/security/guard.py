"""The per-route checks: Host, Origin and token, chosen when the app is built.

There is no middleware (see :mod:`deepaas.api.errors`): ``routing.add_route``
asks :func:`route_checks` which checks each route needs (from the kind
that the route table declares for it), and runs them in
the route's one wrapper (with the request id and the JSON errors), so that
a route with nothing to check (authentication off, a GET with every Host
allowed) pays nothing, and one with checks pays for no extra coroutine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from deepaas.api.errors import allowed_methods
from deepaas.api.routes import Route
from deepaas.api.security.auth import (
    AuthPolicy,
    Requirement,
    StaticTokens,
    parse_requirement,
)
from deepaas.api.security.origins import (
    STATE_CHANGING,
    OriginPolicy,
    default_allowed_hosts,
)
from deepaas.api.security.settings import SecuritySettings

__all__ = [
    "GUARD",
    "Guard",
    "RouteChecks",
    "guard_from_settings",
    "install",
    "route_checks",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Kinds answered whatever the Host: probes are read-only and are often
#: sent by an orchestrator with an address for Host.
_ANY_HOST_KINDS = frozenset({"health", "ready", "metrics"})


@dataclasses.dataclass(frozen=True)
class Guard:
    """The security options of one application."""

    origins: OriginPolicy = dataclasses.field(default_factory=OriginPolicy)
    auth: AuthPolicy | None = None


GUARD = web.AppKey("deepaas_guard", Guard)


def install(app: web.Application, guard: Guard | None) -> None:
    """Keep ``guard`` on the app (before routes are added) and add CORS headers."""
    guard = guard or Guard()
    app[GUARD] = guard
    if guard.origins.cors:
        app.on_response_prepare.append(guard.origins.add_cors_headers)


@dataclasses.dataclass(frozen=True)
class RouteChecks:
    """What one route checks before its handler runs.

    ``origins`` is the policy that the Host (``host``) and the Origin
    (``origin``) are checked against, None when neither is; ``auth`` checks
    the token for routes of ``kind``.
    """

    kind: str
    origins: OriginPolicy | None = None
    host: bool = False
    origin: bool = False
    auth: AuthPolicy | None = None


def route_checks(app: web.Application, route: Route) -> RouteChecks | None:
    """The checks that ``route`` needs (None: none at all)."""
    guard = app.get(GUARD) or Guard()
    kind, method = route.kind, route.method
    origins = guard.origins
    check_host = origins.checks_hosts and kind not in _ANY_HOST_KINDS
    check_origin = method in STATE_CHANGING
    auth = (
        guard.auth if guard.auth is not None and not guard.auth.is_open(kind) else None
    )
    if not (check_host or check_origin or auth):
        return None
    return RouteChecks(
        kind=kind,
        origins=origins if check_host or check_origin else None,
        host=check_host,
        origin=check_origin,
        auth=auth,
    )


def preflight_first(fallback: Handler) -> Handler:
    """``fallback``, answering CORS preflights first when other origins are allowed.

    No route answers ``OPTIONS``, so preflights reach the last route; only
    requests that no route took pay for the test.  A refused preflight
    raises (:meth:`OriginPolicy.preflight`), and the route's wrapper
    answers it.
    """

    async def answer(request: web.Request) -> web.StreamResponse:
        guard = request.app[GUARD]
        if (
            request.method == "OPTIONS"
            and "Access-Control-Request-Method" in request.headers
        ):
            guard.origins.check_host(request)  # raises when refused
            methods = await allowed_methods(request)
            if methods:
                return guard.origins.preflight(request, methods)
        return await fallback(request)

    return answer


def guard_from_settings(
    settings: SecuritySettings, environ: Mapping[str, str] | None = None
) -> Guard:
    """The Guard that the security settings ask for; ValueError names a bad one."""
    hosts = settings.allowed_hosts or default_allowed_hosts(settings.listen_ip)
    origins = OriginPolicy(
        allowed_origins=settings.allowed_origins,
        allowed_hosts=tuple(hosts) if hosts is not None else None,
    )
    tokens = StaticTokens.load(settings.auth_token_file, environ)
    oidc = None
    if settings.oidc_issuer:
        from deepaas.api.security.oidc import OidcVerifier

        oidc = OidcVerifier(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            jwks_url=settings.oidc_jwks_url,
            jwks_file=settings.oidc_jwks_file,
            algorithms=settings.oidc_algorithms,
            leeway=settings.oidc_leeway,
        )
    rules: dict[str, list[Requirement]] = {}
    for text in settings.oidc_require:
        kind, requirement = parse_requirement(text)
        rules.setdefault(kind, []).append(requirement)
    auth = AuthPolicy(
        tokens=tokens, oidc=oidc, rules=rules, open_kinds=frozenset(settings.auth_open)
    )
    return Guard(origins=origins, auth=auth if auth.enabled else None)
