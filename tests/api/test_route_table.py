"""The route table: every route the server answers is declared once, fully.

Auth, request metrics and both API descriptions read the table, so a route
registered without a kind, a metrics label or its documentation would be
checked, counted or described wrongly: these tests fail for such a route.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from deepaas._kinds import KINDS
from deepaas.api import ApiSettings, create_app
from deepaas.api.keys import EXECUTORS
from deepaas.api.routes import ROUTES, Route, RouteTable
from deepaas.engine.build import build_executors
from deepaas.training import TrainingService
from tests.conftest import spec

BASE = "/base"
MODELS = ("echo", "trainer", "predict-only")
#: Routes that DEEPaaS 2.x never described, and that stay undescribed.
UNDOCUMENTED = {"/debug/", "/swagger.json", "/openapi.json", "/api", "/ui"}


@pytest.fixture
async def server(installed_models: Any, aiohttp_client: Any, tmp_path: Path) -> Any:
    executors = build_executors([spec(name) for name in MODELS], workers=0)
    settings = ApiSettings(base_path=BASE, debug_endpoint=True, metrics=True)
    app = create_app(
        executors, settings=settings, trainings=TrainingService(tmp_path / "state")
    )
    return await aiohttp_client(app)


def _full(route: Route) -> str:
    return BASE + route.template if route.path != "/" else BASE + "/"


async def test_every_route_is_declared_with_a_kind_and_a_metrics_label(
    server: Any,
) -> None:
    table: RouteTable = server.app[ROUTES]
    declared = {}
    for route in table:
        assert route.kind in KINDS
        assert route.label.startswith("/")
        full = _full(route)
        twin = full.rstrip("/") if full.endswith("/") else full + "/"
        declared[(route.method, full)] = declared[(route.method, twin)] = route
    registered = 0
    for aio_route in server.app.router.routes():
        canonical = aio_route.resource.canonical
        if canonical == "/{path}" or canonical.startswith(f"{BASE}/api/static/"):
            continue  # the last route (404/405) and the Swagger UI's files
        method = "GET" if aio_route.method == "HEAD" else aio_route.method
        assert (method, canonical) in declared, f"{method} {canonical} undeclared"
        registered += 1
    assert registered >= 2 * len(table)  # every route, and its twin


async def test_every_declared_route_is_in_both_api_descriptions(server: Any) -> None:
    documents = {}
    for name in ("swagger.json", "openapi.json"):
        answer = await server.get(f"{BASE}/{name}")
        assert answer.status == 200
        documents[name] = (await answer.json())["paths"]
    table: RouteTable = server.app[ROUTES]
    executors = server.app[EXECUTORS]
    trains = {name: executors[name].description.train.available for name in MODELS}
    assert sorted(trains.values()) == [False, False, True]  # both cases seen
    undocumented = set()
    for route in table:
        names = MODELS if route.per_model else ("",)
        for name in names:
            path = _full(route).replace("{name}", name)
            for document in documents.values():
                operation = document.get(path, {}).get(route.method.lower())
                if route.doc is None:
                    undocumented.add(route.path)
                    if not route.model:  # a model's own route: its {name} twin's
                        assert operation is None
                elif "/train/" in route.path and not trains[name]:
                    assert operation is None  # no train: no train operations
                else:
                    assert operation is not None, f"{route.method} {path}"
    served_own = {f"/v2/models/{name}/predict/" for name in MODELS}
    assert undocumented == UNDOCUMENTED | served_own


async def test_requests_count_under_their_route_s_declared_label(
    server: Any,
) -> None:
    table: RouteTable = server.app[ROUTES]
    own = table.find("POST", "/v2/models/echo/predict/")
    listing = table.find("GET", "/v2/models/{name}/train/")
    assert own is not None and listing is not None
    await server.post(f"{BASE}/v2/models/echo/predict/", json={"data": "x"})
    await server.get(f"{BASE}/v2/models/trainer/train/")
    text = await (await server.get(f"{BASE}/metrics")).text()
    counted = {
        (sample.labels["model"], sample.labels["endpoint"], sample.labels["method"])
        for family in text_string_to_metric_families(text)
        if family.name == "deepaas_requests"
        for sample in family.samples
        if sample.value
    }
    # A model's own route counts like its {name} route, for that model.
    assert own.label == "/v2/models/{name}/predict"
    assert ("echo", own.label, "POST") in counted
    assert ("trainer", listing.label, "GET") in counted


def test_a_route_must_name_a_known_kind_and_method() -> None:
    with pytest.raises(TypeError, match="kind"):
        Route(method="POST", path="/some/new/thing", doc=None)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"unknown kind 'predcit'.*kinds: predict"):
        Route(method="POST", path="/some/new/thing", kind="predcit", doc=None)
    with pytest.raises(ValueError, match="method must be one of"):
        Route(method="FETCH", path="/x", kind="read", doc=None)
    with pytest.raises(ValueError, match="starts with '/'"):
        Route(method="GET", path="x", kind="read", doc=None)


def test_a_route_is_declared_once() -> None:
    table = RouteTable()
    table.add(Route(method="GET", path="/x", kind="read", doc=None))
    table.add(Route(method="POST", path="/x", kind="train", doc=None))
    with pytest.raises(ValueError, match="GET /x is declared twice"):
        table.add(Route(method="GET", path="/x", kind="docs", doc=None))
    assert [route.kind for route in table] == ["read", "train"]


def test_labels_and_documented_paths_drop_the_patterns() -> None:
    route = Route(
        method="GET",
        path="/v2/models/{name}/train/{uuid:[0-9a-fA-F]{32}}/logs",
        kind="train",
        doc=None,
    )
    assert route.template == "/v2/models/{name}/train/{uuid}/logs"
    assert route.label == route.path  # as /metrics always labelled it
    assert route.per_model
    assert Route(method="GET", path="/", kind="read", doc=None).label == "/"
