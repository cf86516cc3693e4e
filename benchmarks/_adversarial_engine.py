"""The execution-engine cases of benchmarks/adversarial.py (issue 11, 2, 3, 8).

Clients that give up (an aiohttp client with a timeout) against a real
``deepaas-run --workers 1``; each case is bounded in count and in time:

* ``crashing_uploads``: 30 uploads whose input crashes the worker, from
  clients that give up after 0.2 s: how long until the model answers
  again, and how many worker restarts that took;
* ``train_behind_predictions``: ``POST .../train/`` while the worker runs a
  3 s prediction, from a client that gives up after 1 s: how long the
  answer took, and whether a training was recorded;
* ``dead_calls``: 48 clients that give up after 0.3 s load the server for
  5 s (``--max-queue 32``): calls still queued when they stop, then what 16
  clients x 25 calls get;
* ``hung_model``: a prediction that hangs 6 s: what ``/ready`` says after
  2.5 s (``--ready-stall-timeout 1``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

Case = Callable[[Path], Awaitable[dict[str, Any]]]
MODEL = "adversary"


async def _give_up(
    session: aiohttp.ClientSession, url: str, after: float, **kwargs: Any
) -> int | str:
    try:
        timeout = aiohttp.ClientTimeout(total=after)
        async with session.post(url, timeout=timeout, **kwargs) as resp:
            await resp.read()
            return resp.status
    except (asyncio.TimeoutError, aiohttp.ClientError):
        return "gave up"


async def _model_state(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with session.get(f"{base}/health") as resp:
        state: dict[str, Any] = (await resp.json())["models"][MODEL]
        return state


def engine_cases(serving: Callable[..., Any]) -> dict[str, Case]:
    """The cases, each starting its server with ``serving(work, *args)``."""

    def urls(server: Any) -> tuple[str, str, str]:
        base = f"http://127.0.0.1:{server.port}"
        return (
            base,
            f"{base}/v2/models/{MODEL}/predict/",
            f"{base}/v2/models/{MODEL}/train/",
        )

    async def crashing_uploads(work: Path) -> dict[str, Any]:
        with serving(work, "--workers", "1") as server:
            base, predict, _ = urls(server)
            async with aiohttp.ClientSession() as session:

                def upload() -> aiohttp.FormData:
                    form = aiohttp.FormData()
                    form.add_field("value", "exit")
                    form.add_field("data", b"x" * 100_000, filename="input.bin")
                    return form

                started = time.monotonic()
                await asyncio.gather(
                    *(_give_up(session, predict, 0.2, data=upload()) for _ in range(30))
                )
                while time.monotonic() - started < 120:
                    if await _give_up(session, predict, 60, json={}) == 200:
                        break
                    await asyncio.sleep(0.2)
                down = time.monotonic() - started
                restarts = (await _model_state(session, base))["restarts"]
        return {
            "crashing_uploads": 30,
            "model_back_after_s": round(down, 1),
            "worker_restarts": restarts,
        }

    async def train_behind_predictions(work: Path) -> dict[str, Any]:
        with serving(work, "--workers", "1") as server:
            _, predict, train = urls(server)
            async with aiohttp.ClientSession() as session:
                busy = asyncio.ensure_future(
                    _give_up(session, predict, 30, json={"seconds": 3})
                )
                await asyncio.sleep(0.3)
                started = time.monotonic()
                answer = await _give_up(session, train, 1.0, json={"seconds": 0})
                took = time.monotonic() - started
                await busy
                await asyncio.sleep(1)
                async with session.get(train) as resp:
                    recorded = len(await resp.json())
        return {
            "train_answer": answer,
            "train_answer_s": round(took, 2),
            "trainings_recorded": recorded,
        }

    async def dead_calls(work: Path) -> dict[str, Any]:
        with serving(work, "--workers", "1", "--max-queue", "32") as server:
            base, predict, _ = urls(server)
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                stop = time.monotonic() + 5

                async def impatient() -> None:
                    while time.monotonic() < stop:
                        await _give_up(session, predict, 0.3, json={"seconds": 0.05})

                await asyncio.gather(*(impatient() for _ in range(48)))
                queued = (await _model_state(session, base))["queued"]
                answers: dict[str, int] = {}

                async def client() -> None:
                    for _ in range(25):
                        status = str(await _give_up(session, predict, 30, json={}))
                        answers[status] = answers.get(status, 0) + 1

                await asyncio.gather(*(client() for _ in range(16)))
        return {"queued_when_the_load_stops": queued, "next_run_answers": answers}

    async def hung_model(work: Path) -> dict[str, Any]:
        with serving(work, "--workers", "1", "--ready-stall-timeout", "1") as server:
            base, predict, _ = urls(server)
            async with aiohttp.ClientSession() as session:
                hung = asyncio.ensure_future(
                    _give_up(session, predict, 4, json={"seconds": 6})
                )
                await asyncio.sleep(2.5)
                async with session.get(f"{base}/ready") as resp:
                    status, body = resp.status, await resp.json()
                hung.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await hung
        return {"ready_status": status, "ready_state": body["status"]}

    return {
        "crashing_uploads": crashing_uploads,
        "train_behind_predictions": train_behind_predictions,
        "dead_calls": dead_calls,
        "hung_model": hung_model,
    }
