"""The API descriptions and the Swagger UI, served from packaged assets."""

from __future__ import annotations

import html
import json
from pathlib import Path

import swagger_ui_bundle
from aiohttp import web

from deepaas.api import openapi
from deepaas.api.keys import EXECUTORS, SETTINGS, SPEC_CACHE
from deepaas.api.routes import ROUTES, Route, RouteTable
from deepaas.api.routing import add_route, route_handler, url
from deepaas.api.security.guard import GUARD

SWAGGER_UI_DIR = Path(swagger_ui_bundle.swagger_ui_path)

_INDEX = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="{static}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{static}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{static}/swagger-ui-bundle.js"></script>
  <script src="{static}/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: {spec_url},
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout",
      validatorUrl: null
    }});
  </script>
</body>
</html>
"""


def _document(request: web.Request, version: int) -> dict[str, object]:
    cache = request.app[SPEC_CACHE]
    key = f"v{version}"
    if key not in cache:
        descriptions = [ex.description for ex in request.app[EXECUTORS].values()]
        guard = request.app.get(GUARD)
        auth = guard.auth if guard is not None else None
        routes: RouteTable = request.app[ROUTES]
        cache[key] = openapi.build_document(
            descriptions,
            routes,
            version=version,
            base_path=request.app[SETTINGS].base_path,
            is_open=auth.is_open if auth is not None else None,
        )
    return cache[key]


async def swagger_json(request: web.Request) -> web.Response:
    return web.json_response(_document(request, 2))


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(_document(request, 3))


async def swagger_ui(request: web.Request) -> web.Response:
    page = _INDEX.format(
        title=html.escape(openapi.TITLE),
        static=url(request, "/api/static"),
        spec_url=json.dumps(url(request, "/swagger.json")),
    )
    return web.Response(text=page, content_type="text/html")


async def static_asset(request: web.Request) -> web.FileResponse:
    """A Swagger UI file; a missing one is a JSON 404 like every error.

    (aiohttp's own static route finds a missing file only while sending, too
    late to answer in JSON, and answers an empty body.)
    """
    name = request.match_info["filename"]
    path = SWAGGER_UI_DIR / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise web.HTTPNotFound(text=f"no Swagger UI asset named {name!r}")
    return web.FileResponse(path)


async def redirect_to_ui(request: web.Request) -> web.Response:
    raise web.HTTPFound(url(request, "/api"))


# The descriptions do not describe themselves (nor did DEEPaaS 2.x's).
SWAGGER_JSON = Route(
    method="GET", path="/swagger.json", kind="docs", needs_models=True, doc=None
)
OPENAPI_JSON = Route(
    method="GET", path="/openapi.json", kind="docs", needs_models=True, doc=None
)
SWAGGER_UI = Route(method="GET", path="/api", kind="docs", doc=None)
UI = Route(method="GET", path="/ui", kind="docs", doc=None)
#: The Swagger UI's files: public (no Host, Origin or token checks), and
#: outside the route table, which holds the routes that clients call.
STATIC = Route(method="GET", path="/api/static/{filename}", kind="docs", doc=None)


def setup(app: web.Application, *, with_ui: bool) -> None:
    add_route(app, SWAGGER_JSON, swagger_json)
    add_route(app, OPENAPI_JSON, openapi_json)
    if with_ui:
        add_route(app, SWAGGER_UI, swagger_ui)
        add_route(app, UI, redirect_to_ui)
        base = app[SETTINGS].base_path
        app.router.add_get(
            f"{base}{STATIC.path}", route_handler(app, static_asset, STATIC)
        )
