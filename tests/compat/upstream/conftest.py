"""Real ``deepaas-run`` servers for the ports of DEEPaaS 2.6.0's test suite.

Each configuration below is one server for the whole session, shared by
every module that asks for it; all of them start together on the first
request (their start-up overlaps), serving the 2.6.0-like ``deepaas-test``
model and the small models of ``_models.py``, installed as real entry points.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.compat.upstream import _http
from tests.conftest import FAKE_MODELS, subprocess_env, write_distribution
from tests.servers import RunningServer, free_port

#: Entry points of the models these ports serve.
UPSTREAM_MODELS = {
    "deepaas-test": FAKE_MODELS["deepaas-test"],
    "schema-class": "tests.compat.upstream._models:SchemaClass",
    "schema-dict": "tests.compat.upstream._models:SchemaDict",
    "schema-list": "tests.compat.upstream._models:SchemaList",
    "schema-object": "tests.compat.upstream._models:SchemaObject",
    "nothing": "tests.compat.upstream._models:nothing",
}

_TEST_MODEL = ("--model-name", "deepaas-test")

#: name -> ``deepaas-run`` options of each server the ports use. The base-path
#: server also serves the small models of ``_models.py`` (test_v2_models.py
#: reaches them under the prefix): one server fewer to start.
CONFIGURATIONS: dict[str, tuple[str, ...]] = {
    "plain": (*_TEST_MODEL, "--listen-ip", "127.0.0.1"),
    "no-train-no-doc": (
        *_TEST_MODEL,
        "--train-endpoint",
        "false",
        "--doc-endpoint",
        "false",
    ),
    "no-predict": (*_TEST_MODEL, "--predict-endpoint", "false"),
    "base-path": (
        *_TEST_MODEL,
        "--base-path",
        "/custom",
        "--model-name",
        "schema-class",
        "--model-name",
        "schema-dict",
        "--model-name",
        "nothing",
    ),
}

ServerFor = Callable[[str], _http.Target]


@pytest.fixture(scope="session")
def upstream_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a console script that finds the models above."""
    site = tmp_path_factory.mktemp("upstream-site")
    write_distribution(site, UPSTREAM_MODELS, name="deepaas_upstream_models")
    state = tmp_path_factory.mktemp("upstream-state")
    return subprocess_env(
        site, XDG_STATE_HOME=str(state), DEEPAAS_DEMO_DIR=str(state / "demo")
    )


@pytest.fixture(scope="session")
def plain_port() -> int:
    """The port the plain server is told with ``--listen-port``."""
    return free_port()


@pytest.fixture(scope="session")
def server_for(
    upstream_env: dict[str, str],
    plain_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerFor]:
    """``server_for("no-predict")``: that configuration's server, serving."""
    servers: dict[str, RunningServer] = {}
    logs = tmp_path_factory.mktemp("upstream-logs")

    def serve(name: str) -> _http.Target:
        if not servers:
            for config, args in CONFIGURATIONS.items():
                servers[config] = RunningServer(
                    *args, env=upstream_env, log=logs / f"{config}.log",
                    port=plain_port if config == "plain" else 0,
                )  # fmt: skip
        servers[name].wait_serving()
        return _http.Target(servers[name].url)

    yield serve
    for server in servers.values():
        try:
            server.terminate(timeout=15)
        finally:
            server.close()


@pytest.fixture
def upstream_server(server_for: ServerFor) -> _http.Target:
    """The plain server over 2.6.0's test model, as 2.6.0's suite builds it."""
    return server_for("plain")
