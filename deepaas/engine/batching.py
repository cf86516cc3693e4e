"""Dynamic batching: concurrent predictions grouped into ``predict_batch`` calls.

A model opts in by defining ``predict_batch(list_of_kwargs) -> list`` (one
answer per request, in order; an exception instance in the list fails only
that request) and may set ``max_batch_size`` (default 8) and
``batch_timeout`` (seconds, default 0.01).  A batch leaves as soon as it is
full, or ``batch_timeout`` after its first request arrived.  Waiting for
company only pays while requests come concurrently, so a request that
arrives alone (nothing else queued, and the previous batch was a single
request too) leaves at once: a model called one request at a time answers
as fast as without batching.  Every caller receives its own answer or its
own error.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Any

from deepaas.engine.processes.wire import error_from_wire, is_wire_error
from deepaas.exceptions import (
    DeepaasError,
    MethodNotImplemented,
    QueueFull,
    ResponseInvalid,
    WorkerCrashed,
)
from deepaas.model.description import ModelDescription
from deepaas.model.wrapper import (
    ModelWrapper,
    PredictOutcome,
    RawArguments,
    _resolve,
    model_error,
)

Request = tuple[RawArguments, "str | None"]
RunBatch = Callable[[list[Request]], Awaitable[list[Any]]]
_Item = tuple[RawArguments, "str | None", "asyncio.Future[PredictOutcome]"]


def run_batch(
    wrapper: ModelWrapper, requests: list[Request]
) -> list[PredictOutcome | DeepaasError]:
    """Answer several requests with one ``predict_batch`` call (blocking).

    Arguments that do not validate fail only their own request, and the
    model sees only the valid ones; an exception instance in the list the
    model returns fails only that request.
    """
    method = getattr(wrapper.model, "predict_batch", None)
    if not callable(method):
        raise MethodNotImplemented(
            f"model {wrapper.name!r} does not implement predict_batch"
        )
    outcomes: list[PredictOutcome | DeepaasError | None] = [None] * len(requests)
    valid: list[tuple[int, dict[str, Any], str | None]] = []
    for index, (raw, accept) in enumerate(requests):
        try:
            kwargs = wrapper.parse_predict_args(raw, accept)
        except DeepaasError as exc:
            outcomes[index] = exc
            continue
        valid.append((index, kwargs, kwargs.get("accept", accept)))
    if valid:
        try:
            results = _resolve(method([kwargs for _, kwargs, _ in valid]))
            if not isinstance(results, (list, tuple)) or len(results) != len(valid):
                raise ResponseInvalid(
                    f"model {wrapper.name!r}: predict_batch must return a list with "
                    f"one answer per request ({len(valid)})"
                )
        except DeepaasError as exc:
            results = [exc] * len(valid)
        except Exception as exc:
            results = [model_error(exc)] * len(valid)
        for (index, _, chosen), result in zip(valid, results, strict=True):
            try:
                if isinstance(result, DeepaasError):
                    raise result
                if isinstance(result, BaseException):
                    raise model_error(result)
                outcomes[index] = wrapper.finish_predict(result, chosen)
            except DeepaasError as exc:
                outcomes[index] = exc
    return [o for o in outcomes if o is not None]


class Batcher:
    """Collects requests and hands them to ``run_batch`` in groups.

    ``concurrency`` batches may be in progress at once (one per worker), so
    a pool of N workers runs N batches side by side.
    """

    def __init__(
        self,
        name: str,
        run_batch: RunBatch,
        *,
        max_batch_size: int = 8,
        batch_timeout: float = 0.01,
        concurrency: int = 1,
        max_queue: int = 64,
        sizes: collections.Counter[int] | None = None,
    ) -> None:
        self._name = name
        #: How many batches of each size left (read by /metrics).
        self.sizes = collections.Counter() if sizes is None else sizes
        self._run_batch = run_batch
        self._max = max(1, int(max_batch_size))
        self._timeout = max(0.0, float(batch_timeout))
        self._max_queue = max_queue
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._last_batch_size = 0
        # One batch is collected at a time: an idle runner must not take the
        # request another one is holding a batch open for.
        self._collecting = asyncio.Lock()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._dispatch()) for _ in range(concurrency)]

    @classmethod
    def for_model(
        cls,
        description: ModelDescription,
        run_batch: RunBatch,
        *,
        concurrency: int,
        max_queue: int,
        sizes: collections.Counter[int] | None = None,
    ) -> Batcher | None:
        """The batcher a described model asks for, or None when it does not batch."""
        batching = description.batching
        if not batching:
            return None
        return cls(
            description.name,
            run_batch,
            max_batch_size=batching["max_batch_size"],
            batch_timeout=batching["batch_timeout"],
            concurrency=concurrency,
            max_queue=max_queue,
            sizes=sizes,
        )

    @property
    def queued(self) -> int:
        """Requests waiting for a batch, not counting abandoned ones."""
        self._drop_abandoned()
        return self._queue.qsize()

    def _drop_abandoned(self) -> None:
        """Take out of the queue the requests whose callers went away.

        A cancelled caller cannot pull its item out of an asyncio.Queue, so
        the queue is rebuilt here; only when it is read or full, never per
        call.  No dispatcher awaits a non-empty queue, so none is woken.
        """
        items = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        for item in items:
            if not item[2].done():
                self._queue.put_nowait(item)

    async def submit(self, raw: RawArguments, accept: str | None) -> PredictOutcome:
        """Queue one request and wait for its own answer."""
        if self._queue.qsize() >= self._max_queue:
            self._drop_abandoned()
        if self._queue.qsize() >= self._max_queue:
            raise QueueFull(
                f"model {self._name!r}: {self._queue.qsize()} requests are waiting "
                "for a batch; retry later"
            )
        future: asyncio.Future[PredictOutcome] = (
            asyncio.get_running_loop().create_future()
        )
        self._queue.put_nowait((raw, accept, future))
        return await future

    async def _collect(self) -> list[_Item]:
        batch = [await self._queue.get()]
        if self._queue.empty() and self._last_batch_size <= 1:
            # Alone, and the traffic so far came one request at a time.
            self._last_batch_size = 1
            return batch
        deadline = time.monotonic() + self._timeout
        while len(batch) < self._max:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        self._last_batch_size = len(batch)
        return batch

    async def _dispatch(self) -> None:
        while True:
            async with self._collecting:
                batch = await self._collect()
            live = [item for item in batch if not item[2].done()]
            if not live:
                continue
            self.sizes[len(live)] += 1
            try:
                results = await self._run_batch([(raw, acc) for raw, acc, _ in live])
                if len(results) != len(live):
                    raise DeepaasError(
                        f"model {self._name!r}: a batch of {len(live)} requests got "
                        f"{len(results)} answers"
                    )
            except DeepaasError as exc:
                self._fail(live, exc)
                continue
            except asyncio.CancelledError:
                for _, _, future in live:
                    if not future.done():
                        future.set_exception(
                            WorkerCrashed("the server is shutting down")
                        )
                raise
            except Exception as exc:  # never let one batch stop the batcher
                self._fail(live, DeepaasError(f"model {self._name!r}: {exc}"))
                continue
            for (_, _, future), result in zip(live, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, DeepaasError):
                    future.set_exception(result)
                elif is_wire_error(result):
                    future.set_exception(error_from_wire(result))
                else:
                    future.set_result(result)

    @staticmethod
    def _fail(items: list[_Item], exc: DeepaasError) -> None:
        for _, _, future in items:
            if not future.done():
                future.set_exception(exc)

    def close(self) -> None:
        """Stop batching; requests still queued fail with 503."""
        for task in self._tasks:
            task.cancel()
        while not self._queue.empty():
            _, _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(WorkerCrashed("the server is shutting down"))
