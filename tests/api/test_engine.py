"""The execution engine as a client sees it: crashes, timeouts, readiness."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request

import aiohttp
import pytest

from deepaas.api import create_app
from deepaas.engine.build import build_executors
from deepaas.engine.probe import plan_from_settings
from deepaas.engine.settings import EngineSettings
from tests.conftest import spec, subprocess_env
from tests.processes import pid_exists

#: Every request in this module is bounded: a hang fails the test.
TIMEOUT = aiohttp.ClientTimeout(total=20)


async def post(client, model: str, **params: object):
    resp = await client.post(
        f"/v2/models/{model}/predict/", params={k: str(v) for k, v in params.items()},
        timeout=TIMEOUT,
    )
    return resp, await resp.json()


async def get(client, path: str):
    resp = await client.get(path, timeout=TIMEOUT)
    return resp, await resp.json()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "cause"),
    [("exit", "exited with code 3"), ("kill", "SIGKILL"), ("segfault", "SIGSEGV")],
)
async def test_a_crash_answers_503_and_the_next_request_succeeds(
    make_client, how, cause
):
    client = await make_client("crashy", workers=1)
    resp, body = await post(client, "crashy", how=how)
    assert resp.status == 503
    assert cause in body["message"] and "restarted" in body["message"]
    assert resp.headers["Retry-After"] == "1"
    started = time.monotonic()
    resp, body = await post(client, "crashy")
    assert resp.status == 200, body
    assert time.monotonic() - started < 10


@pytest.mark.slow
async def test_predict_timeout_answers_504_and_recycles_the_worker(make_client):
    client = await make_client("crashy", workers=1, predict_timeout=0.5)
    _, before = await post(client, "crashy")
    resp, body = await post(client, "crashy", how="sleep", seconds=60)
    assert resp.status == 504
    assert "--predict-timeout" in body["message"]
    resp, after = await post(client, "crashy")
    assert resp.status == 200
    assert after["predictions"]["pid"] != before["predictions"]["pid"]


@pytest.mark.slow
async def test_a_full_queue_answers_503_with_retry_after(make_client, tmp_path):
    client = await make_client("gate", workers=1, max_queue=1)
    gate = tmp_path / "open"  # the model holds each call until it exists

    async def counts_reach(**expected: int) -> None:
        deadline = time.monotonic() + 20
        while True:
            _, body = await get(client, "/health")
            counts = body["models"]["gate"]
            if all(counts[k] == v for k, v in expected.items()):
                return
            assert time.monotonic() < deadline, counts
            await asyncio.sleep(0.01)

    busy = asyncio.ensure_future(post(client, "gate", gate=gate))
    await counts_reach(busy=1)
    queued = asyncio.ensure_future(post(client, "gate", gate=gate))
    await counts_reach(queued=1)
    resp, body = await post(client, "gate", gate=gate)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert "retry later" in body["message"]
    gate.touch()
    assert (await busy)[0].status == 200 and (await queued)[0].status == 200


@pytest.mark.slow
async def test_no_worker_outlives_the_server(make_client):
    client = await make_client("crashy", workers=2)
    pids = set()
    for _ in range(6):
        _, body = await post(client, "crashy", how="sleep", seconds=0.05)
        pids.add(body["predictions"]["pid"])
    await client.close()
    deadline = time.monotonic() + 5
    while any(pid_exists(p) for p in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not [p for p in pids if pid_exists(p)]


@pytest.mark.slow
async def test_health_and_ready(make_client):
    client = await make_client("crashy", "echo", workers=1)
    resp, body = await get(client, "/health")
    assert resp.status == 200 and body["status"] == "alive"
    resp, body = await get(client, "/ready")
    assert resp.status == 200, body
    assert body["status"] == "ready"
    for model in ("crashy", "echo"):  # 0 == 0 would hold while nothing runs
        counts = body["models"][model]
        assert (counts["workers"], counts["ready"], counts["warming"]) == (1, 1, 0)


@pytest.mark.slow
async def test_ready_is_503_while_warming(installed_models, aiohttp_client):
    """An embedding application that starts its executors itself."""
    executors = build_executors([spec("slow-warm")], workers=1)
    client = await aiohttp_client(create_app(executors, manage_executors=False))
    starting = asyncio.ensure_future(executors["slow-warm"].start())
    try:
        await asyncio.sleep(0.1)
        resp, body = await get(client, "/ready")
        assert resp.status == 503 and body["status"] == "warming"
        resp, _ = await get(client, "/health")
        assert resp.status == 200
        await asyncio.wait_for(starting, 20)
        resp, body = await get(client, "/ready")
        assert resp.status == 200 and body["status"] == "ready"
    finally:
        await executors["slow-warm"].stop()


@pytest.mark.slow
async def test_ready_is_503_while_a_crashed_worker_rewarms(make_client):
    client = await make_client("slow-warm", workers=1)
    _, body = await post(client, "slow-warm")
    os.kill(body["predictions"]["pid"], signal.SIGKILL)  # as the OOM killer does
    deadline = time.monotonic() + 15
    states = set()
    while time.monotonic() < deadline:
        resp, body = await get(client, "/ready")
        states.add((resp.status, body["status"]))
        if resp.status == 200 and len(states) > 1:
            break
        await asyncio.sleep(0.05)
    # Between the crash and the end of the re-warm, /ready says so.
    assert (503, "warming") in states
    assert (200, "ready") in states
    resp, _ = await post(client, "slow-warm")
    assert resp.status == 200


@pytest.mark.slow
async def test_a_degraded_pool_is_not_ready_but_answers(make_client):
    client = await make_client("slow-warm", workers=2)
    pids = set()
    while len(pids) < 2:
        _, body = await post(client, "slow-warm")
        pids.add(body["predictions"]["pid"])
    os.kill(next(iter(pids)), signal.SIGKILL)
    deadline = time.monotonic() + 10  # until the pool notices the death
    resp, body = await get(client, "/ready")
    while body["models"]["slow-warm"]["ready"] == 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        resp, body = await get(client, "/ready")
    assert resp.status == 503 and body["status"] == "degraded"
    resp, _ = await post(client, "slow-warm")
    assert resp.status == 200


@pytest.mark.slow
@pytest.mark.parametrize("model", ["thread-echo", "async-echo"])
async def test_declared_in_process_models_skip_the_process_hop(
    installed_models, aiohttp_client, model
):
    # The start-up probe reads the declaration, as deepaas-run does.
    plan = await plan_from_settings(
        [spec(model)], EngineSettings(workers=2), gpus=[], environ={}
    )
    executors = build_executors([spec(model)], workers=2, worker_envs=plan)
    client = await aiohttp_client(create_app(executors))
    resp, body = await post(client, model, value="v")
    assert resp.status == 200
    assert body["predictions"] == {"value": "v", "pid": os.getpid()}
    _, ready = await get(client, "/ready")
    assert ready["models"][model]["mode"] == f"in-process ({model.split('-')[0]})"


async def test_coroutine_models_run_concurrently_on_the_loop(make_client):
    client = await make_client("async-sleeper", workers=0)
    started = time.monotonic()
    answers = await asyncio.gather(*(post(client, "async-sleeper") for _ in range(10)))
    assert all(resp.status == 200 for resp, _ in answers)
    assert time.monotonic() - started < 1.5  # 10 x 0.2 s, overlapped


@pytest.mark.slow
async def test_batching_through_the_api(make_client):
    client = await make_client("batched", workers=1)
    answers = await asyncio.gather(
        *(post(client, "batched", value=f"v{i}") for i in range(4)),
        post(client, "batched", value="boom"),
    )
    statuses = [resp.status for resp, _ in answers]
    assert statuses == [200, 200, 200, 200, 500]
    assert [body["predictions"]["value"] for _, body in answers[:4]] == [
        f"v{i}" for i in range(4)
    ]
    assert "bad value 'boom'" in answers[4][1]["message"]


# -- deepaas-run: the plan made at start-up chooses where each model runs ---------


@pytest.mark.slow
def test_deepaas_run_refuses_a_gpu_model_without_gpu(start_server, installed_models):
    server = start_server("--model-name", "needs-gpu", "--gpus", "none",
                          env=subprocess_env(installed_models))
    assert server.wait(60) == 1
    err = server.stderr()
    assert "model 'needs-gpu' asks for 1 GPU(s) per worker, but 0 GPU(s)" in err


@pytest.mark.slow
def test_deepaas_run_serves_declared_models_in_process(start_server, installed_models):
    server = start_server("--model-name", "thread-echo", "--model-name", "crashy",
                          env=subprocess_env(installed_models))
    url = server.wait_serving()

    def pid_of(model: str) -> int:
        request = urllib.request.Request(
            f"{url}/v2/models/{model}/predict/", data=b"", method="POST"
        )
        with urllib.request.urlopen(request, timeout=20) as resp:
            return json.loads(resp.read())["predictions"]["pid"]

    assert pid_of("thread-echo") == server.pid
    assert pid_of("crashy") != server.pid
    assert server.terminate() == 0
