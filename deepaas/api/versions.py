"""GET / and GET /v2/: the API versions and their links."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from deepaas.api import openapi
from deepaas.api.routes import Route
from deepaas.api.routing import add_route, url


def v2_version(request: web.Request) -> dict[str, Any]:
    """The V2 version object of the contract."""
    return {
        "version": "stable",
        "id": "v2",
        "links": [
            {"rel": "self", "type": "application/json", "href": url(request, "/v2/")}
        ],
    }


async def get_versions(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "versions": [v2_version(request)],
            "links": [
                {"rel": "help", "type": "text/html", "href": url(request, "/api")},
                {
                    "rel": "describedby",
                    "type": "application/json",
                    "href": url(request, "/swagger.json"),
                },
            ],
        }
    )


async def get_v2(request: web.Request) -> web.Response:
    return web.json_response(v2_version(request))


VERSIONS = Route(method="GET", path="/", kind="read", doc=openapi.versions_operation)
V2 = Route(method="GET", path="/v2/", kind="read", doc=openapi.v2_operation)


def setup(app: web.Application) -> None:
    add_route(app, VERSIONS, get_versions)
    add_route(app, V2, get_v2)
