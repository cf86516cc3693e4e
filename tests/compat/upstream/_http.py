"""A plain HTTP client for the ports: paths go on the wire exactly as written.

2.6.0's suite used aiohttp's test client; this one sends the request line
verbatim (no URL normalisation), so repeated slashes and missing trailing
slashes reach the server as a client would send them.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import urllib.parse
import uuid
from collections.abc import Mapping
from typing import Any

Field = str | int | float | tuple[str, bytes]


@dataclasses.dataclass(frozen=True)
class Answer:
    """What came back: status, headers and the raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        """The media type, without parameters such as ``charset``."""
        return self.headers.get("Content-Type", "").split(";")[0].strip()

    def json(self) -> Any:
        """The body as JSON; fails the test with the body when it is not."""
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError(
                f"{self.status} answer is not JSON: {self.body[:300]!r}"
            ) from None


@dataclasses.dataclass(frozen=True)
class Target:
    """A server at ``url`` (``http://host:port``, no path)."""

    url: str

    def request(
        self,
        method: str,
        path: str,
        *,
        form: Mapping[str, Field] | None = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60,
    ) -> Answer:
        """Send one request; ``form`` is multipart (tuples are file parts)."""
        parsed = urllib.parse.urlsplit(self.url)
        if params:
            path = f"{path}?{urllib.parse.urlencode(params)}"
        all_headers = dict(headers or {})
        body = None
        if form is not None:
            body, content_type = _multipart(form)
            all_headers["Content-Type"] = content_type
        connection = http.client.HTTPConnection(
            parsed.hostname, parsed.port, timeout=timeout
        )
        try:
            connection.request(method, path, body=body, headers=all_headers)
            response = connection.getresponse()
            data = response.read()
            return Answer(response.status, dict(response.getheaders()), data)
        finally:
            connection.close()

    def get(self, path: str, **kwargs: Any) -> Answer:
        """``GET path``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Answer:
        """``POST path``."""
        return self.request("POST", path, **kwargs)


def _multipart(form: Mapping[str, Field]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in form.items():
        if isinstance(value, tuple):
            filename, data = value
            head = (
                f'Content-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream'
            )
        else:
            head = f'Content-Disposition: form-data; name="{name}"'
            data = str(value).encode()
        parts.append(f"--{boundary}\r\n{head}\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
