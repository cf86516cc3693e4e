"""The route table: one declaration per route, read by every concern.

Each route is declared once, as a :class:`Route` given to
``routing.add_route``: its method and path, the kind of operation that
authentication checks (:data:`~deepaas._kinds.KINDS`), the ``endpoint``
label of its requests in ``/metrics``, whether it waits for the models
while the server starts, and how the API descriptions document it (an
operation builder of :mod:`deepaas.api.openapi`, or None for a route that
DEEPaaS 2.x never described).  The application keeps them, in the order
they were added, in a :class:`RouteTable` (:data:`ROUTES`): the guard,
the request metrics and both API descriptions read it, so that a new
route is one declaration (and a test, ``tests/api/test_route_table.py``,
fails for a route that the table does not hold).  Everything is derived
when the app is built; a request pays for none of it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from deepaas._kinds import KINDS

if TYPE_CHECKING:
    from deepaas.model.description import ModelDescription

__all__ = ["KINDS", "ROUTES", "DocContext", "OperationBuilder", "Route", "RouteTable"]

#: A route's variable with its own pattern, ``{uuid:[0-9a-fA-F]{32}}``
#: (one level of braces inside, as in ``{32}``).
_PATTERNED = re.compile(r"\{(\w+):(?:[^{}]|\{[^{}]*\})*\}")

#: The methods a route may answer (a GET route answers HEAD too).
_METHODS = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE"))


@dataclasses.dataclass(frozen=True)
class DocContext:
    """What an operation builder documents: the version, and the model.

    ``model`` is the description of the model whose paths are documented,
    for the routes with ``{name}`` (None for the others); ``response_ref``
    names its response schema in the document (None: the generic one).
    """

    version: int
    model: ModelDescription | None = None
    response_ref: str | None = None


#: An operation of the API descriptions, and the parameters of its path
#: (shared by the path's operations); None: not documented for this model.
Documented = tuple[dict[str, Any], list[dict[str, Any]]] | None
OperationBuilder = Callable[[DocContext], Documented]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Route:
    """One route: what it answers, and what every concern needs to know of it.

    ``path`` is relative to the base path and may hold aiohttp variables
    (``{name}``, the model; ``{uuid:[0-9a-fA-F]{32}}``).  ``kind`` is one of
    :data:`KINDS`.  ``label`` is the ``endpoint`` label of ``/metrics``
    (default: the path without its trailing slash).  ``model`` names the
    served model of a route written for one model (``/v2/models/echo/
    predict/``), which its requests are counted for.  ``needs_models``: the
    route waits while the models warm (it reads them).  ``doc`` builds the
    route's operation in both API descriptions (``None``: undocumented,
    which only the routes that DEEPaaS 2.x never described are).

    >>> Route(method="GET", path="/health", kind="health", doc=None).label
    '/health'
    """

    method: str
    path: str
    kind: str
    doc: OperationBuilder | None
    label: str = ""
    model: str = ""
    needs_models: bool = False

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(
                f"route {self.path!r}: method must be one of "
                f"{', '.join(sorted(_METHODS))} (got {self.method!r})"
            )
        if not self.path.startswith("/"):
            raise ValueError(f"a route's path starts with '/' (got {self.path!r})")
        if self.kind not in KINDS:
            raise ValueError(
                f"route {self.method} {self.path}: unknown kind {self.kind!r}; "
                f"kinds: {', '.join(KINDS)}"
            )
        if not self.label:
            object.__setattr__(self, "label", self.path.rstrip("/") or "/")

    @property
    def per_model(self) -> bool:
        """Whether the path's ``{name}`` names the model (one route for all)."""
        return "{name}" in self.path

    @property
    def template(self) -> str:
        """The path as the API descriptions write it: ``{uuid}``, no pattern."""
        return _PATTERNED.sub(r"{\1}", self.path)


class RouteTable:
    """The routes of one application, in the order they were added."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, route: Route) -> None:
        """Add ``route``; a second route with its method and path is an error."""
        if self.find(route.method, route.path) is not None:
            raise ValueError(f"route {route.method} {route.path} is declared twice")
        self._routes.append(route)

    def find(self, method: str, path: str) -> Route | None:
        """The route declared with this method and path (as declared), if any."""
        for route in self._routes:
            if route.method == method and route.path == path:
                return route
        return None

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)


#: Each application's route table, filled by ``routing.add_route``.
ROUTES = web.AppKey("deepaas_routes", RouteTable)
