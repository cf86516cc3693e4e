"""Typed settings of the HTTP side: what the API serves, how the server
listens (who may call it: :mod:`deepaas.api.security.settings`).

``deepaas-run`` builds these once from its options (in :mod:`deepaas.cmd`);
the API reads only these.  Each refuses a bad value when it is made, with
the message the user sees, naming the option.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deepaas.api.protocol import ServerLimits

#: Largest body read into memory (JSON, url-encoded forms, multipart fields):
#: such bodies take about four times their size while they are parsed.
DEFAULT_CLIENT_MAX_SIZE = 16 * 1024 * 1024
#: Largest multipart body; its files are streamed to disk, not held in memory.
DEFAULT_UPLOAD_MAX_SIZE = 1024 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ApiSettings:
    """The options that shape the API, validated where they enter."""

    predict_endpoint: bool = True
    train_endpoint: bool = True
    debug_endpoint: bool = False
    doc_endpoint: bool = True
    base_path: str = ""
    client_max_size: int = DEFAULT_CLIENT_MAX_SIZE
    upload_max_size: int = DEFAULT_UPLOAD_MAX_SIZE
    upload_dir: str | None = None
    #: Serve Prometheus metrics at /metrics and count every request for them.
    metrics: bool = True
    #: Log one line per request (logger aiohttp.access, level INFO).
    access_log: bool = True
    #: Append a provenance record of each answered prediction to this file.
    provenance_log: str | None = None

    def __post_init__(self) -> None:
        path = self.base_path.strip()
        if path and not path.startswith("/"):
            path = "/" + path
        object.__setattr__(self, "base_path", path.rstrip("/"))
        for option, value in (
            ("--client-max-size", self.client_max_size),
            ("--upload-max-size", self.upload_max_size),
        ):
            if value < 0:
                raise ValueError(f"{option} must be >= 0 (got {value})")


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """How deepaas-run's HTTP server listens, reads requests and stops.

    ``limits`` holds the request timeouts and the bound on connections as
    asked (deepaas-run lowers that bound to what ``ulimit -n`` allows).
    """

    listen_ip: str = "127.0.0.1"
    listen_port: int = 5000
    shutdown_timeout: float = 30.0
    max_form_parts: int = 1000
    limits: ServerLimits = dataclasses.field(default_factory=lambda: _limits())

    def __post_init__(self) -> None:
        for option, value in (
            ("--shutdown-timeout", self.shutdown_timeout),
            ("--max-form-parts", self.max_form_parts),
        ):
            if value < 0:
                raise ValueError(f"{option} must be >= 0 (got {value})")

    @property
    def address(self) -> str:
        """The listening IP as it appears in a URL (IPv6 in brackets)."""
        host = self.listen_ip
        return f"[{host}]" if ":" in host else host


def _limits() -> ServerLimits:
    # The protocol module reads the API's keys, which name ApiSettings.
    from deepaas.api.protocol import ServerLimits

    return ServerLimits()


__all__ = [
    "DEFAULT_CLIENT_MAX_SIZE",
    "DEFAULT_UPLOAD_MAX_SIZE",
    "ApiSettings",
    "ServerSettings",
]
