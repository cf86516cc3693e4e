"""DEEPaaS 2.6.0's ``deepaas/tests/test_versions_api.py``, ported to our server.

Not ported (internals, not the wire):

- ``test_get_no_versions`` empties 2.6.0's class-level version registry
  (``versions.Versions.versions = {}``) to see ``{"versions": []}``; a server
  started by ``deepaas-run`` always serves V2, so no client can see that.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

V2_VERSION = {
    "version": "stable",
    "id": "v2",
    "links": [{"rel": "self", "type": "application/json", "href": "/v2/"}],
}

VERSIONS = {
    "versions": [V2_VERSION],
    "links": [
        {"rel": "help", "type": "text/html", "href": "/api"},
        {"rel": "describedby", "type": "application/json", "href": "/swagger.json"},
    ],
}


def test_v2_version(upstream_server):
    answer = upstream_server.get("/")
    assert answer.status == 200
    assert answer.json() == VERSIONS


def test_v2_version_document(upstream_server):
    """``GET /v2/`` answers the V2 entry that ``/`` lists (its handler in 2.6.0)."""
    answer = upstream_server.get("/v2/")
    assert answer.status == 200
    assert answer.json() == V2_VERSION


def test_versions_under_base_path(server_for):
    """2.6.0 prefixes every link of the versions document with ``--base-path``."""
    answer = server_for("base-path").get("/custom")
    assert answer.status == 200
    body = answer.json()
    assert body["versions"][0]["links"][0]["href"] == "/custom/v2/"
    assert [link["href"] for link in body["links"]] == [
        "/custom/api",
        "/custom/swagger.json",
    ]
