"""Abandoned requests of a batching model leave its queue (issue 11, item 2).

The batcher's queue is an asyncio.Queue, from which a cancelled caller (its
client disconnected: aiohttp cancels the handler) cannot take its item: the
queue must not count such dead requests against --max-queue, nor report
them as queued.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deepaas.engine.batching import Batcher
from deepaas.exceptions import QueueFull
from deepaas.model.wrapper import PredictOutcome, RawArguments


async def test_cancelled_callers_free_their_place_in_the_queue():
    release = asyncio.Event()
    batches: list[int] = []

    async def run_batch(requests: list[Any]) -> list[PredictOutcome]:
        batches.append(len(requests))
        await release.wait()  # the one worker is busy until released
        return [PredictOutcome(b"{}") for _ in requests]

    batcher = Batcher(
        "m", run_batch, max_batch_size=1, batch_timeout=0, concurrency=1, max_queue=4
    )
    try:
        running = asyncio.ensure_future(batcher.submit(RawArguments(), None))
        while not batches:
            await asyncio.sleep(0.001)
        waiting = [
            asyncio.ensure_future(batcher.submit(RawArguments(), None))
            for _ in range(4)
        ]
        await asyncio.sleep(0.01)
        assert batcher.queued == 4
        with pytest.raises(QueueFull):
            await batcher.submit(RawArguments(), None)

        for task in waiting:  # their clients went away
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        assert batcher.queued == 0
        live = [
            asyncio.ensure_future(batcher.submit(RawArguments(), None))
            for _ in range(4)
        ]  # room again: no 503
        await asyncio.sleep(0.01)
        assert not any(task.done() for task in live)

        release.set()
        assert all(
            isinstance(r, PredictOutcome) for r in await asyncio.gather(running, *live)
        )
        assert batches == [1] * 5  # the abandoned ones never ran
    finally:
        batcher.close()
