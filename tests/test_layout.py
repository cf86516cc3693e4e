"""The package layout holds: who may import whom.

``deepaas.model`` is the model contract (loading, wrapping, arguments,
description, files); ``deepaas.engine`` runs models (executors, workers,
batching, GPUs); ``deepaas.api`` is HTTP; ``deepaas.training``,
``deepaas.jobs`` and ``deepaas.batch`` run beside the API, never through
it; only ``deepaas.cmd`` reads options.  Each layer imports only the ones
below it.  Two checks, since each misses what the other sees: a fresh
interpreter imports every module and reports what came with it (imports
made through other packages, e.g. a library that pulls in aiohttp), and a
scan of the source finds every ``import`` statement, including the ones
inside functions that importing the module does not run.  Inside a layer,
a few rules keep its seams (the process bootstrap below the pools that use
it, each training backend alone, the security checks below the routes).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "deepaas"

#: What no layer below deepaas/cmd imports: aiohttp, the options, the scripts.
_BELOW_THE_EDGE = ("aiohttp", "oslo_config", "deepaas.cmd", "deepaas.config")

#: What each layer must never import (module name prefixes).
FORBIDDEN = {
    "deepaas.model": (
        "aiohttp",
        "deepaas.api",
        "deepaas.batch",
        "deepaas.cmd",
        "deepaas.engine",
        "deepaas.training",
    ),
    "deepaas.engine": (
        "aiohttp",
        "deepaas.api",
        "deepaas.batch",
        "deepaas.cmd",
        "deepaas.training",
    ),
    "deepaas.provenance": (
        "aiohttp",
        "deepaas.api",
        "deepaas.batch",
        "deepaas.cmd",
        "deepaas.engine",
        "deepaas.training",
    ),
    # Trainings and prediction jobs run beside the API, never through it.
    "deepaas.training": (*_BELOW_THE_EDGE, "deepaas.api", "deepaas.batch"),
    "deepaas.jobs": (*_BELOW_THE_EDGE, "deepaas.api", "deepaas.batch"),
    "deepaas.batch": (
        *_BELOW_THE_EDGE,
        "deepaas.api",
        "deepaas.jobs",
        "deepaas.training",
    ),
}
#: Neither the model, the engine nor the API reads options: they take the
#: typed settings that deepaas/cmd builds (docs/architecture.md).
for _layer in ("deepaas.model", "deepaas.engine", "deepaas.provenance"):
    FORBIDDEN[_layer] += ("oslo_config", "deepaas.config")

#: Rules inside a layer, checked on the source only (importing a subpackage
#: runs its layer's ``__init__``, which brings in its neighbours).
WITHIN_A_LAYER = {
    # The one process bootstrap knows none of the loops that use it.
    "deepaas.engine.processes": (
        "deepaas.engine.build",
        "deepaas.engine.in_process",
        "deepaas.engine.probe",
        "deepaas.engine.process_pool",
    ),
    # Each training backend stands alone behind the protocol.
    "deepaas.training.backends.local": ("deepaas.training.backends.slurm",),
    # The checks know a route by its table entry, not by its handlers.
    "deepaas.api.security": (
        "deepaas.api.app",
        "deepaas.api.jobs",
        "deepaas.api.models",
        "deepaas.api.routing",
        "deepaas.api.train",
    ),
    # The API reads the typed settings only.
    "deepaas.api": ("oslo_config", "deepaas.cmd", "deepaas.config"),
}

#: Modules allowed to import deepaas modules inside a function, and why.
DEFERRED_IMPORTS = {
    # A spawned batch worker imports the model-side modules after its
    # prologue has set the environment the model must see.
    "deepaas/batch/_worker.py",
}

#: Imports every module of a package, one by one, in this fresh interpreter,
#: and prints which forbidden modules each one brought in.
_PROBE = """
import importlib, json, pkgutil, sys
package, forbidden = sys.argv[1], tuple(sys.argv[2:])
def bad():
    return {m for m in sys.modules
            if any(m == f or m.startswith(f + ".") for f in forbidden)}
found = {}
seen = bad()
root = importlib.import_module(package)
walk = pkgutil.walk_packages(root.__path__, package + ".")
names = [package] + [m.name for m in walk]
for name in names:
    importlib.import_module(name)
    new = bad() - seen
    if new:
        found[name] = sorted(new)[:5]
    seen |= new
print(json.dumps({"modules": names, "found": found}))
"""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path) -> list[tuple[int, str, str]]:
    """Every module ``path`` imports: (line, absolute name, where), where is
    ``"module"`` (runs on import), ``"function"`` (runs when called) or
    ``"typing"`` (under ``if TYPE_CHECKING``: never runs)."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, where: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            where = "function" if where == "module" else where
        elif _is_type_checking(node):
            where = "typing"
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name, where) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                # ``from pkg import mod`` imports the module pkg.mod when it is one.
                sub = ROOT / f"{base}.{alias.name}".replace(".", "/")
                is_module = sub.with_suffix(".py").exists() or sub.is_dir()
                name = f"{base}.{alias.name}" if is_module else base
                found.append((node.lineno, name, where))
        for child in ast.iter_child_nodes(node):
            visit(child, where)

    visit(ast.parse(path.read_text(), str(path)), "module")
    return found


def _forbids(name: str, forbidden: tuple[str, ...]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


@pytest.mark.slow
@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_importing_a_layer_brings_in_nothing_above_it(package):
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, package, *FORBIDDEN[package]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert len(report["modules"]) > 5, report  # the walk did find the package
    assert report["found"] == {}, (
        f"{package} must not import {FORBIDDEN[package]}; these modules did: "
        f"{report['found']}"
    )


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_source_line_of_a_layer_imports_above_it(package):
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for path in _sources(package)
        for line, name, _ in _imports(path)
        if _forbids(name, FORBIDDEN[package])
    ]
    assert wrong == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_deepaas_modules_at_the_top(package):
    """A deepaas import inside a function is how an import cycle hides."""
    deferred = [
        f"{path.relative_to(ROOT)}:{line}: imports {name} inside a function"
        for path in _sources(package)
        if str(path.relative_to(ROOT)) not in DEFERRED_IMPORTS
        for line, name, where in _imports(path)
        if where == "function" and _forbids(name, ("deepaas",))
    ]
    assert deferred == []


@pytest.mark.parametrize("package", sorted(WITHIN_A_LAYER))
def test_no_source_line_breaks_a_rule_within_a_layer(package):
    sources = _sources(package) or [ROOT / (package.replace(".", "/") + ".py")]
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for path in sources
        for line, name, _ in _imports(path)
        if _forbids(name, WITHIN_A_LAYER[package])
    ]
    assert sources[0].exists(), package
    assert wrong == []


def test_no_import_cycle_between_deepaas_modules():
    graph: dict[str, set[str]] = {}
    for path in _sources("deepaas"):
        graph[_module_name(path)] = {
            name
            for _, name, where in _imports(path)
            if where == "module" and _forbids(name, ("deepaas",))
        }
    assert {"deepaas.engine.probe", "deepaas.engine.devices"} <= set(graph)

    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
