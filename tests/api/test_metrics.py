"""GET /metrics of a real deepaas-run, read with prometheus-client's own parser.

One server for the module (``--workers 1``: the models run in worker
processes, the API process counts), driven with real requests: answers,
a worker that crashes, a call that exceeds ``--predict-timeout``, a batch
and a training.  Then what ``/metrics`` says must match what happened.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from deepaas.api import ApiSettings, create_app, request_metrics
from deepaas.api.access_log import access_log_options
from deepaas.api.request_metrics import DURATION_BUCKETS, Series
from deepaas.engine.build import build_executors
from deepaas.engine.devices import DevicePlan
from tests.conftest import FAKE_MODELS, spec, subprocess_env, write_distribution
from tests.processes import poll, wait_for
from tests.servers import RunningServer

TIMEOUT = 2.0
PREDICT = "/v2/models/{name}/predict"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition: (name, labels) -> value."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


class Server(RunningServer):
    """``deepaas-run`` on a free loopback port, its log in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        super().__init__(*args, env=env, log=log)
        self.wait_serving(120)

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def metrics(self) -> Samples:
        status, headers, body = self.request("GET", "/metrics")
        assert status == 200, body
        assert headers["Content-Type"].startswith("text/plain")
        return parse(body.decode())

    def wait_until(
        self, check: Callable[[Samples], bool], timeout: float = 60
    ) -> Samples:
        def met() -> Samples | None:
            samples = self.metrics()
            return samples if check(samples) else None

        return wait_for(met, "the metrics to match", timeout)

    def close(self) -> None:
        """Stop it as an operator does (SIGTERM); kill it if it hangs."""
        if self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.terminate()
        super().close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    site = write_distribution(tmp_path_factory.mktemp("site"), FAKE_MODELS)
    state = tmp_path_factory.mktemp("state")
    log = tmp_path_factory.mktemp("log") / "stderr.log"
    server = Server(
        [
            "--model-name",
            "crashy",
            "--model-name",
            "batched",
            "--model-name",
            "trainer",
            "--workers",
            "1",
            "--predict-timeout",
            str(TIMEOUT),
            "--state-dir",
            str(state),
        ],
        subprocess_env(site),
        log,
    )
    try:
        yield server
    finally:
        server.close()


def ready(model: str) -> Callable[[Samples], bool]:
    return lambda s: value(s, "deepaas_workers_ready", model=model) == 1


def requests_of(samples: Samples, model: str, status: str) -> float:
    return samples.get(
        (
            "deepaas_requests_total",
            frozenset(
                {
                    "model": model,
                    "endpoint": PREDICT,
                    "method": "POST",
                    "status": status,
                }.items()
            ),
        ),
        0.0,
    )


@pytest.mark.slow
def test_requests_crash_restart_and_timeout_are_counted(server: Server) -> None:
    path = "/v2/models/crashy/predict/"
    for _ in range(2):
        assert server.request("POST", path, {"how": "ok"})[0] == 200
    status, headers, body = server.request("POST", path, {"how": "exit"})
    assert status == 503, body
    crash_id = headers["X-Request-ID"]
    server.wait_until(ready("crashy"))
    started = time.monotonic()
    status, _, body = server.request("POST", path, {"how": "sleep", "seconds": 60})
    assert status == 504, body
    assert time.monotonic() - started >= TIMEOUT
    # The 504 is answered before the timed-out worker is found dead: wait
    # for its restart to be counted, then for the new worker.
    server.wait_until(
        lambda s: value(
            s, "deepaas_worker_restarts_total", model="crashy", cause="timeout"
        )
        == 1
    )
    server.wait_until(ready("crashy"))
    assert server.request("GET", "/v2/models/")[0] == 200
    # A name no model has must never become a label value.
    assert server.request("POST", "/v2/models/no-such-model-x/predict/", {})[0] == 404

    samples = server.metrics()
    assert requests_of(samples, "crashy", "200") == 2
    assert requests_of(samples, "crashy", "503") == 1
    assert requests_of(samples, "crashy", "504") == 1
    assert (
        value(
            samples,
            "deepaas_requests_total",
            model="",
            endpoint="/v2/models",
            method="GET",
            status="200",
        )
        == 1
    )
    assert requests_of(samples, "", "404") == 1
    assert not any("no-such-model-x" in str(labels) for _, labels in samples)
    assert (
        value(samples, "deepaas_worker_restarts_total", model="crashy", cause="exit")
        == 1
    )
    assert (
        value(samples, "deepaas_worker_restarts_total", model="crashy", cause="timeout")
        == 1
    )
    assert (
        value(samples, "deepaas_worker_restarts_total", model="crashy", cause="signal")
        == 0
    )
    assert value(samples, "deepaas_predict_timeouts_total", model="crashy") == 1
    assert value(samples, "deepaas_workers", model="crashy") == 1
    assert value(samples, "deepaas_stalled", model="crashy") == 0

    # The duration histogram agrees with the counter, and the 504 took long.
    labels = {"model": "crashy", "endpoint": PREDICT, "method": "POST", "status": "504"}
    count = value(samples, "deepaas_request_duration_seconds_count", **labels)
    assert count == 1
    assert value(samples, "deepaas_request_duration_seconds_sum", **labels) >= TIMEOUT
    assert (
        value(samples, "deepaas_request_duration_seconds_bucket", le="1.0", **labels)
        == 0
    )
    assert (
        value(samples, "deepaas_request_duration_seconds_bucket", le="+Inf", **labels)
        == 1
    )
    # The API process itself is watched too.
    assert samples["process_resident_memory_bytes", frozenset()] > 0

    # The crash's error log line and the access log name the same request.
    log = server.stderr()
    assert re.search(rf"\(request {crash_id}\): .*died", log), log[-3000:]
    assert re.search(rf'"POST {path} HTTP/1.1" 503 \d+ .* {crash_id}\n', log)


def requests_delta(
    before: Samples, after: Samples, name: str = "deepaas_requests_total", **labels: str
) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.mark.slow
def test_each_answer_is_counted_once_under_its_routes_labels(server: Server) -> None:
    before = server.metrics()
    assert server.request("HEAD", "/v2/")[0] == 200
    assert server.request("GET", "/v2/")[0] == 200
    # Merged slashes: answered by the route of /v2/models/, counted there only.
    assert server.request("GET", "//v2//models/")[0] == 200
    assert server.request("GET", "//ui")[0] == 200  # a redirect to /api, followed
    assert server.request("GET", "/api/static/swagger-ui.css")[0] == 200
    assert server.request("GET", "/no/such/path")[0] == 404
    # Refused by the HTTP server itself: no route ever sees it.
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert conn.recv(1024).split()[1] == b"404"
    after = server.metrics()

    def counted(**labels: str) -> float:
        return requests_delta(before, after, model="", **labels)

    assert counted(endpoint="/v2", method="HEAD", status="200") == 1
    assert counted(endpoint="/v2", method="GET", status="200") == 1
    assert counted(endpoint="/v2/models", method="GET", status="200") == 1
    assert counted(endpoint="other", method="GET", status="200") == 0
    assert counted(endpoint="/ui", method="GET", status="302") == 1
    assert counted(endpoint="other", method="GET", status="302") == 0
    assert counted(endpoint="/api/static/{filename}", method="GET", status="200") == 1
    assert counted(endpoint="other", method="GET", status="404") == 1
    assert counted(endpoint="other", method="OPTIONS", status="404") == 1
    # Every routed answer has its duration; the refused one has none.
    assert (
        requests_delta(
            before,
            after,
            "deepaas_request_duration_seconds_count",
            model="",
            endpoint="/v2",
            method="HEAD",
            status="200",
        )
        == 1
    )
    assert (
        "deepaas_request_duration_seconds_count",
        frozenset(
            {
                "model": "",
                "endpoint": "other",
                "method": "OPTIONS",
                "status": "404",
            }.items()
        ),
    ) not in after


@pytest.mark.slow
def test_busy_workers_and_queue_depth_are_read_live(server: Server) -> None:
    path = "/v2/models/crashy/predict/"
    server.wait_until(ready("crashy"))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        calls = [
            pool.submit(server.request, "POST", path, {"how": "sleep", "seconds": 0.6})
            for _ in range(2)
        ]
        server.wait_until(
            lambda s: (
                value(s, "deepaas_workers_busy", model="crashy") == 1
                and value(s, "deepaas_queue_depth", model="crashy") == 1
            )
        )
        assert [c.result()[0] for c in calls] == [200, 200]
    samples = server.metrics()
    assert value(samples, "deepaas_workers_busy", model="crashy") == 0
    assert value(samples, "deepaas_queue_depth", model="crashy") == 0


@pytest.mark.slow
def test_batch_sizes_and_trainings_by_status(server: Server) -> None:
    server.wait_until(ready("batched"))
    path = "/v2/models/batched/predict/"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = list(
            pool.map(
                lambda i: server.request("POST", path, {"value": str(i)})[0], range(4)
            )
        )
    assert statuses == [200] * 4
    status, _, body = server.request(
        "POST", "/v2/models/trainer/train/", {"seconds": 0}
    )
    assert status == 200, body
    uuid = json.loads(body)["uuid"]
    deadline = time.monotonic() + 60
    while (
        json.loads(server.request("GET", f"/v2/models/trainer/train/{uuid}")[2])[
            "status"
        ]
        != "done"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)

    samples = server.metrics()
    batches = value(samples, "deepaas_batch_size_count", model="batched")
    assert 1 <= batches <= 4
    assert value(samples, "deepaas_batch_size_sum", model="batched") == 4
    assert (
        value(samples, "deepaas_batch_size_bucket", model="batched", le="+Inf")
        == batches
    )
    assert value(samples, "deepaas_trainings", model="trainer", status="done") == 1
    assert value(samples, "deepaas_trainings", model="trainer", status="error") == 0
    assert (
        "deepaas_batch_size_count",
        frozenset({"model": "crashy"}.items()),
    ) not in samples


async def scrape(app: web.Application) -> Samples:
    runner = web.AppRunner(app, **access_log_options(app))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        import aiohttp

        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/v2/") as resp:
                assert resp.status == 200
            async with session.get(f"{url}/metrics") as resp:
                assert resp.status == 200
                return parse(await resp.text())
    finally:
        await runner.cleanup()


async def test_gpus_assigned_follow_the_device_plan(installed_models) -> None:
    plan = DevicePlan(
        {
            "echo": [
                {"CUDA_VISIBLE_DEVICES": "0"},
                {"CUDA_VISIBLE_DEVICES": "0"},
                {"CUDA_VISIBLE_DEVICES": "1,2"},
            ],
            "__training__:echo": {"CUDA_VISIBLE_DEVICES": "3"},
            "images": [{"CUDA_VISIBLE_DEVICES": ""}],
        }
    )
    executors = build_executors([spec("echo"), spec("images")], workers=0)
    samples = await scrape(create_app(executors, gpu_plan=plan))
    gpus = {
        dict(labels)["gpu"]: (dict(labels), v)
        for (name, labels), v in samples.items()
        if name == "deepaas_gpu_assigned"
    }
    assert gpus == {
        "0": ({"model": "echo", "gpu": "0", "role": "predict"}, 2),
        "1": ({"model": "echo", "gpu": "1", "role": "predict"}, 1),
        "2": ({"model": "echo", "gpu": "2", "role": "predict"}, 1),
        "3": ({"model": "echo", "gpu": "3", "role": "train"}, 1),
    }


async def test_each_application_counts_alone(installed_models) -> None:
    first = create_app(build_executors([spec("echo")], workers=0))
    second = create_app(build_executors([spec("echo")], workers=0))
    await scrape(first)
    samples = await scrape(second)
    # Only this server's own GET /v2/ (the scrape is counted after answering).
    assert (
        value(
            samples,
            "deepaas_requests_total",
            model="",
            endpoint="/v2",
            method="GET",
            status="200",
        )
        == 1
    )


async def test_metrics_off_is_404(installed_models, aiohttp_client) -> None:
    app = create_app(
        build_executors([spec("echo")], workers=0), settings=ApiSettings(metrics=False)
    )
    client = await aiohttp_client(app)
    resp = await client.get("/metrics")
    assert resp.status == 404
    assert resp.content_type == "application/json"


def test_a_duration_on_a_bound_is_counted_in_that_bucket() -> None:
    series = Series()
    series.durations.extend([0.0005, 0.0004, 0.2, 100.0])
    series.fold()
    below = dict(zip(DURATION_BUCKETS, series.cumulative, strict=True))
    assert below[0.0005] == 2  # Prometheus buckets are "less or equal"
    assert below[0.1] == 2
    assert below[0.25] == 3
    assert below[60.0] == 3
    assert below[float("inf")] == 4
    assert series.total == pytest.approx(100.2009)
    series.durations.append(0.001)
    series.fold()
    assert series.durations == []
    assert series.cumulative[DURATION_BUCKETS.index(0.001)] == 3
    assert series.cumulative[-1] == 5


async def test_durations_are_folded_without_a_scrape(
    installed_models, aiohttp_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Between scrapes the durations wait in a list: a served app folds them
    # into its buckets every FOLD_INTERVAL, so that list stays short.
    monkeypatch.setattr(request_metrics, "FOLD_INTERVAL", 0.05)
    app = create_app(build_executors([spec("echo")], workers=0))
    client = await aiohttp_client(app)
    for _ in range(5):
        assert (await client.get("/v2/")).status == 200
    series = app[request_metrics.REQUEST_METRICS].series["", "/v2", "GET", "200"]

    async def folded() -> bool:
        return series.durations == [] and series.cumulative[-1] == 5

    await poll(folded, "the durations to be folded", timeout=10)
