"""Abandoned requests are dropped, not run (issue 11, item 2).

A real ``deepaas-run`` with one worker process, and real clients that give
up (an aiohttp client with a timeout): a call whose client went away leaves
the queue at once, its temporary upload files go with it, and it never
reaches the model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import subprocess_env, write_distribution
from tests.servers import RunningServer

pytestmark = pytest.mark.slow

MODEL = "slow"


class Server(RunningServer):
    """``deepaas-run --workers 1`` over the ``slow`` fake model."""

    def __init__(self, tmp: Path, *args: str) -> None:
        site = write_distribution(
            tmp / "site", {MODEL: "tests.fake_models.abandoned:SlowModel"}
        )
        self.uploads = tmp / "uploads"
        self.uploads.mkdir()
        env = subprocess_env(
            site, TMPDIR=str(self.uploads), XDG_STATE_HOME=str(tmp / "state")
        )
        super().__init__(
            "--model-name",
            MODEL,
            "--workers",
            "1",
            *args,
            env=env,
            log=tmp / "server.log",
        )
        self.wait_serving(90)
        self.predict = f"{self.url}/v2/models/{MODEL}/predict/"
        self.train = f"{self.url}/v2/models/{MODEL}/train/"

    def upload_files(self) -> list[Path]:
        return list(self.uploads.glob("deepaas-upload-*"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("abandoned"))
    yield running
    running.close()


async def give_up(
    session: aiohttp.ClientSession, url: str, after: float, **kwargs: Any
) -> int | str:
    """POST and go away after ``after`` seconds, as an impatient client does."""
    try:
        async with session.post(
            url, timeout=aiohttp.ClientTimeout(total=after), **kwargs
        ) as resp:
            await resp.read()
            return resp.status
    except (asyncio.TimeoutError, aiohttp.ClientError):
        return "gave up"


async def health(session: aiohttp.ClientSession, server: Server) -> dict[str, Any]:
    async with session.get(server.url + "/health") as resp:
        body: dict[str, Any] = (await resp.json())["models"][MODEL]
        return body


async def wait_idle(session: aiohttp.ClientSession, server: Server) -> None:
    """Until the worker has finished whatever an earlier test left running."""
    deadline = time.monotonic() + 30
    while (state := await health(session, server))["busy"] or state["queued"]:
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.05)


async def poll(check: Any, timeout: float) -> float:
    """Seconds until ``check()`` is true; fails after ``timeout``."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < timeout, "never happened"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_abandoned_calls_leave_the_queue_and_never_run(server, tmp_path):
    ran = tmp_path / "ran"
    ran.mkdir()
    slow = {"how": "sleep", "seconds": 1.5, "ran": str(ran)}
    async with aiohttp.ClientSession() as session:
        await wait_idle(session, server)
        outcomes = await asyncio.gather(
            *(give_up(session, server.predict, 0.3, json=slow) for _ in range(6))
        )
        assert outcomes == ["gave up"] * 6

        async def queue_empty() -> bool:
            return (await health(session, server))["queued"] == 0

        assert await poll(queue_empty, 1.0) < 1.0
        start = time.monotonic()
        async with session.post(server.predict, json={}) as resp:
            assert resp.status == 200, await resp.text()
        # Only the call already in the worker (1.5 s) was ahead of it, not
        # the five abandoned ones (7.5 s more).
        assert time.monotonic() - start < 4
    # That one ran to its end; the five that waited never reached the model.
    assert len(list(ran.iterdir())) == 1


async def test_abandoned_uploads_remove_their_temp_files_at_once(server, tmp_path):
    async with aiohttp.ClientSession() as session:
        await wait_idle(session, server)
        busy = asyncio.ensure_future(
            give_up(session, server.predict, 30, json={"how": "sleep", "seconds": 3})
        )
        await poll(lambda: _busy(session, server), 5)

        def upload() -> aiohttp.FormData:
            form = aiohttp.FormData()
            form.add_field("data", b"x" * 200_000, filename="input.bin")
            return form

        outcomes = await asyncio.gather(
            *(give_up(session, server.predict, 0.3, data=upload()) for _ in range(5))
        )
        assert outcomes == ["gave up"] * 5

        async def no_temp_files() -> bool:
            return not server.upload_files()

        # Gone while the worker is still busy with the first call.
        await poll(no_temp_files, 1.0)
        assert not busy.done()
        assert await busy == 200


async def _busy(session: aiohttp.ClientSession, server: Server) -> bool:
    return bool((await health(session, server))["busy"])


async def test_crashing_calls_whose_clients_gave_up_do_not_crash_loop(server):
    async with aiohttp.ClientSession() as session:
        await wait_idle(session, server)
        restarts = (await health(session, server))["restarts"]
        outcomes = await asyncio.gather(
            *(
                give_up(session, server.predict, 0.3, json={"how": "exit"})
                for _ in range(10)
            )
        )
        assert "gave up" in outcomes
        deadline = time.monotonic() + 30
        while True:
            async with session.post(server.predict, json={}) as resp:
                if resp.status == 200:
                    break
            assert time.monotonic() < deadline, "the model never came back"
            await asyncio.sleep(0.1)
        # Only calls that reached the worker crashed it: one, or a few
        # whose clients were still there; never all ten.
        assert (await health(session, server))["restarts"] - restarts <= 2


async def test_training_arguments_are_validated_without_waiting_for_predictions(
    server,
):
    async with aiohttp.ClientSession() as session:
        await wait_idle(session, server)
        slow = {"how": "sleep", "seconds": 2}
        queued = [
            asyncio.ensure_future(give_up(session, server.predict, 30, json=slow))
            for _ in range(3)
        ]
        await poll(lambda: _busy(session, server), 5)
        start = time.monotonic()
        async with session.post(server.train, json={"seconds": 0}) as resp:
            assert resp.status == 200, await resp.text()
        async with session.post(server.train, json={"seconds": "long"}) as resp:
            assert resp.status == 422
            assert "seconds" in await resp.json()
        # The queue ahead holds 6 s of predictions.
        assert time.monotonic() - start < 3
        assert not any(task.done() for task in queued)
        assert await asyncio.gather(*queued) == [200, 200, 200]


async def test_an_abandoned_training_request_starts_no_training(server):
    async with aiohttp.ClientSession() as session:
        await wait_idle(session, server)
        async with session.get(server.train) as resp:
            before = len(await resp.json())
        # While no worker is up (it crashed and is restarting), the
        # validation waits for one; this client gives up meanwhile.
        async with session.post(server.predict, json={"how": "exit"}) as resp:
            assert resp.status == 503
        outcome = await give_up(session, server.train, 0.2, json={"seconds": 0})
        assert outcome == "gave up"

        async def ready() -> bool:
            async with session.get(server.url + "/ready") as resp:
                return resp.status == 200

        await poll(ready, 30)
        await asyncio.sleep(0.5)
        async with session.get(server.train) as resp:
            assert len(await resp.json()) == before
