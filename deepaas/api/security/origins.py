"""Cross-site protection: allowed origins (with CORS) and allowed Host names.

A browser sends a cross-site form POST without asking first, so a page of
any site could start trainings or predictions on a server it can reach.  A
state-changing request (POST, PUT, PATCH, DELETE) that carries an
``Origin`` is therefore answered only when that origin is the server's own
or one of ``--allowed-origins``; requests without ``Origin`` (curl,
scripts, DEEPaaS 2.x clients) are not browsers' cross-site requests and go
through.  The allowed origins also get CORS answers (preflights and
``Access-Control-Allow-Origin``), so that a front-end served elsewhere can
call the API.

A page can also reach a server through DNS rebinding: its own name made to
resolve to ``127.0.0.1``, so that it looks same-origin to the browser.
``--allowed-hosts`` refuses requests whose ``Host`` is not one of the
server's names; by default a server listening on a loopback address
answers loopback names only.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from aiohttp import web

from deepaas.exceptions import HostRefused, MethodRefused, OriginRefused

__all__ = ["OriginPolicy", "default_allowed_hosts", "STATE_CHANGING"]

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: Names a loopback server answers to when no --allowed-hosts is given.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", ".localhost")

_DEFAULT_PORTS = {"http": "80", "https": "443"}

#: How many Host header values an OriginPolicy remembers the decision of.
_HOSTS_REMEMBERED = 256

#: Headers that a page of another origin may read from an answer.
_EXPOSED = "Retry-After, X-Log-Offset, X-Request-Id, WWW-Authenticate"


def default_allowed_hosts(listen_ip: str) -> tuple[str, ...] | None:
    """Loopback names when listening on a loopback address; else None (any)."""
    try:
        loopback = ipaddress.ip_address(listen_ip.strip("[]")).is_loopback
    except ValueError:
        loopback = listen_ip.lower() == "localhost"
    return LOOPBACK_HOSTS if loopback else None


def _normalize_origin(origin: str) -> str:
    if origin == "*":
        return origin
    parts = urlsplit(origin.strip().rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
        raise ValueError(
            f"--allowed-origins takes origins like https://ui.example.org or "
            f"http://localhost:8080 (scheme, host and port only), or * (got {origin!r})"
        )
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _host_name(host: str) -> str:
    """A Host header's name, without its port (``[::1]:5000`` -> ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else host


@dataclasses.dataclass(frozen=True)
class OriginPolicy:
    """Which origins may act and which Host names are answered.

    ``allowed_origins`` lists other origins than the server's own (``*``:
    any); ``allowed_hosts`` lists host names (``.example.org`` also matches
    its subdomains, ``*`` any), or is None to answer any Host.
    """

    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] | None = None
    # Host header as sent -> whether it is allowed: clients send the same
    # few values, and parsing one costs every request (bounded below).
    _hosts_seen: dict[str, bool] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        origins = tuple(_normalize_origin(o) for o in self.allowed_origins if o)
        object.__setattr__(self, "allowed_origins", origins)
        hosts = self.allowed_hosts
        if hosts is not None:
            hosts = tuple(_host_name(h) if h != "*" else h for h in hosts if h)
            if not hosts or "*" in hosts:
                hosts = None
        object.__setattr__(self, "allowed_hosts", hosts)

    @property
    def cors(self) -> bool:
        """Whether CORS answers are given (some other origin is allowed)."""
        return bool(self.allowed_origins)

    @property
    def checks_hosts(self) -> bool:
        return self.allowed_hosts is not None

    @property
    def host_decisions(self) -> Mapping[str, bool]:
        """The Host values decided so far, and whether each is allowed.

        The same mapping for the policy's life (bounded: cleared past a few
        hundred values), so that a route can skip :meth:`check` for a
        Host it knows is allowed.
        """
        return self._hosts_seen

    def host_allowed(self, host: str) -> bool:
        """Whether a request's ``Host`` names this server."""
        if self.allowed_hosts is None:
            return True
        seen = self._hosts_seen
        allowed = seen.get(host)
        if allowed is None:
            if len(seen) >= _HOSTS_REMEMBERED:  # many names: start over
                seen.clear()
            allowed = seen[host] = self._host_name_allowed(host)
        return allowed

    def _host_name_allowed(self, host: str) -> bool:
        assert self.allowed_hosts is not None  # checked by the caller
        name = _host_name(host)
        for allowed in self.allowed_hosts:
            if name == allowed or (
                allowed.startswith(".")
                and (name.endswith(allowed) or name == allowed[1:])
            ):
                return True
        return False

    def origin_allowed(self, origin: str) -> bool:
        """Whether ``origin`` is one of the allowed other origins."""
        if "*" in self.allowed_origins:
            return True
        return origin.rstrip("/").lower() in self.allowed_origins

    def check(self, request: web.Request, host: bool, origin: bool) -> None:
        """:meth:`check_host` (when ``host``), then :meth:`check_origin` (when
        ``origin``), in one call: the path every guarded request takes."""
        headers = request.headers
        if host:
            value = headers.get("Host", "")
            allowed = self._hosts_seen.get(value)
            if allowed is None:
                allowed = self.host_allowed(value)
            if not allowed:
                raise _host_refused(value)
        if origin and "Origin" in headers:
            self.check_origin(request)

    def check_host(self, request: web.Request) -> None:
        """Raise :class:`~deepaas.exceptions.HostRefused` (421) when the
        request's Host is not allowed."""
        host = request.headers.get("Host", "")
        if not self.host_allowed(host):
            raise _host_refused(host)

    def check_origin(self, request: web.Request) -> None:
        """Raise :class:`~deepaas.exceptions.OriginRefused` (403) when a
        state-changing request comes from another site."""
        origin = request.headers.get("Origin")
        if origin is None or self.origin_allowed(origin):
            return
        # Browsers set Sec-Fetch-Site themselves; pages cannot forge it.
        if request.headers.get("Sec-Fetch-Site") == "same-origin":
            return
        if _same_origin(origin, request.headers.get("Host", "")):
            return
        raise OriginRefused(
            f"{request.method} from the origin {origin!r} is refused: "
            "only the server's own pages and --allowed-origins may change "
            "anything here"
        )

    def preflight(self, request: web.Request, methods: Iterable[str]) -> web.Response:
        """The answer to a CORS preflight (``OPTIONS`` with the method asked for).

        An origin that is not allowed is refused (403), and so is a method
        that the path does not answer (405, with ``Allow``).
        """
        origin = request.headers.get("Origin", "")
        asked = request.headers.get("Access-Control-Request-Method", "").upper()
        allowed = sorted(set(methods) | {"OPTIONS"})
        if not origin or not self.origin_allowed(origin):
            raise OriginRefused(f"the origin {origin!r} is not in --allowed-origins")
        if asked not in allowed:
            raise MethodRefused(
                f"{request.path} does not answer {asked or 'that method'}",
                headers={"Allow": ", ".join(allowed)},
            )
        headers = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ", ".join(allowed),
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }
        asked_headers = request.headers.get("Access-Control-Request-Headers")
        if asked_headers:
            headers["Access-Control-Allow-Headers"] = asked_headers
        return web.Response(status=204, headers=headers)

    async def add_cors_headers(
        self, request: web.Request, response: web.StreamResponse
    ) -> None:
        """``on_response_prepare``: let an allowed origin read the answer."""
        origin = request.headers.get("Origin")
        if origin is None or not self.origin_allowed(origin):
            return
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = _EXPOSED
        response.headers.add("Vary", "Origin")


def _host_refused(host: str) -> HostRefused:
    return HostRefused(
        f"this server does not answer for the host {host!r}; "
        "the operator can add it to --allowed-hosts"
    )


def _same_origin(origin: str, host: str) -> bool:
    """Whether ``origin`` is ``scheme://<Host>`` (default ports ignored)."""
    parts = urlsplit(origin)
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        return False  # "null" (sandboxed pages, files) is never ours
    netloc = parts.netloc.lower()
    host = host.strip().lower()
    default = ":" + _DEFAULT_PORTS[parts.scheme]
    return netloc.removesuffix(default) == host.removesuffix(default)
