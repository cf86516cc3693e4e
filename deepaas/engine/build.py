"""Choosing and building the executor of each served model."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from deepaas.engine.devices import DevicePlan
from deepaas.engine.executor import Executor
from deepaas.engine.in_process import InProcessExecutor
from deepaas.engine.process_pool.pool import ProcessPool, RunsInProcess
from deepaas.engine.settings import DEFAULT_STALL_TIMEOUT, EngineSettings
from deepaas.model.loading import ModelSpec
from deepaas.model.wrapper import PredictOutcome, RawArguments

#: Named as before this module was renamed (log configurations name it).
LOG = logging.getLogger("deepaas.engine.executors")


class DescribedByFirstWorker(Executor):
    """A model whose first worker says how it runs (no start-up probe).

    Nearly every model runs in worker processes, so start() starts the
    pool, whose first worker imports the model once and reports what it
    declares.  A model that declares ``deepaas_execution = "thread"`` or
    ``"async"`` belongs in the API process instead: the pool stops and an
    in-process executor takes over, sharing the same counters.
    """

    def __init__(
        self, pool: ProcessPool, in_process: Callable[[str], InProcessExecutor]
    ) -> None:
        self.spec = pool.spec
        self.stats = pool.stats
        self._inner: Executor = pool
        self._in_process = in_process

    def launch_early(self) -> None:
        self._inner.launch_early()

    async def start(self) -> None:
        try:
            await self._inner.start()
        except RunsInProcess as moved:
            LOG.info(
                "model %r declares deepaas_execution = %r: it runs in the API "
                "process",
                self.spec.name,
                moved.mode,
            )
            inner = self._in_process(moved.mode)
            inner.stats = self.stats
            self._inner = inner
            await inner.start()
        self.description = self._inner.description
        # Calls go straight to the executor that runs them from now on.
        self.predict = self._inner.predict  # type: ignore[method-assign]

    async def predict(self, raw: RawArguments, accept: str | None) -> PredictOutcome:
        return await self._inner.predict(raw, accept)

    async def predict_interruptible(
        self, raw: RawArguments, accept: str | None
    ) -> PredictOutcome:
        return await self._inner.predict_interruptible(raw, accept)

    async def validate_train(self, raw: RawArguments) -> dict[str, Any]:
        return await self._inner.validate_train(raw)

    async def stop(self, timeout: float = 10.0) -> None:
        await self._inner.stop(timeout)

    def status(self) -> dict[str, Any]:
        return self._inner.status()

    def __getattr__(self, name: str) -> Any:
        # What one implementation offers beyond the interface (worker_pids,
        # stalled_for, ...).
        if name.startswith("__") or name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)


def build_executors(
    specs: Sequence[ModelSpec],
    *,
    workers: int = 1,
    warm: bool = True,
    max_queue: int = 0,
    predict_timeout: float = 0,
    worker_envs: Mapping[str, list[dict[str, str]]] | None = None,
    modes: Mapping[str, str] | None = None,
    log_level: int = logging.INFO,
    ready_stall_timeout: float = DEFAULT_STALL_TIMEOUT,
) -> dict[str, Executor]:
    """One executor per model: in the API process or in worker processes.

    A model runs in-process when ``workers == 0`` or when its mode (from
    ``modes``, or the ``DevicePlan`` given as ``worker_envs``) is
    ``"thread"`` or ``"async"``; otherwise in a :class:`ProcessPool`.
    ``worker_envs`` gives, per model, each worker's extra environment (the
    device plan: ``CUDA_VISIBLE_DEVICES``); its length overrides ``workers``.
    ``ready_stall_timeout``: seconds with every worker busy and none taking
    a call after which ``/ready`` says the model is stalled (0: never).
    """
    if workers < 0:
        raise ValueError(f"--workers must be >= 0 (got {workers})")
    if predict_timeout < 0:
        raise ValueError(f"--predict-timeout must be >= 0 (got {predict_timeout})")
    if modes is None and isinstance(worker_envs, DevicePlan):
        modes = worker_envs.modes
    executors: dict[str, Executor] = {}
    for spec in specs:
        envs = (worker_envs or {}).get(spec.name)
        mode = (modes or {}).get(spec.name, "process")
        described = isinstance(worker_envs, DevicePlan) and (
            worker_envs.described_by_workers
        )

        def in_process(mode: str | None, spec: ModelSpec = spec) -> InProcessExecutor:
            return InProcessExecutor(
                spec,
                warm=warm,
                max_queue=max_queue,
                call_timeout=predict_timeout,
                mode=mode,
                stall_timeout=ready_stall_timeout,
            )

        if workers == 0 or mode in ("thread", "async"):
            executors[spec.name] = in_process(
                None if workers == 0 and mode == "process" else mode
            )
            continue
        size = len(envs) if envs else workers
        pool = ProcessPool(
            spec,
            size=size,
            warm=warm,
            worker_envs=envs,
            max_queue=max_queue,
            call_timeout=predict_timeout,
            log_level=log_level,
            stall_timeout=ready_stall_timeout,
            describe_first=described,
        )
        executors[spec.name] = (
            DescribedByFirstWorker(pool, in_process) if described else pool
        )
    return executors


def executors_from_settings(
    specs: Sequence[ModelSpec],
    settings: EngineSettings,
    *,
    worker_envs: Mapping[str, list[dict[str, str]]] | None = None,
    log_level: int = logging.INFO,
) -> dict[str, Executor]:
    """:func:`build_executors` as the engine's settings ask."""
    return build_executors(
        specs,
        workers=settings.workers,
        warm=settings.warm,
        max_queue=settings.max_queue,
        predict_timeout=settings.call_timeout,
        ready_stall_timeout=settings.ready_stall_timeout,
        worker_envs=worker_envs,
        log_level=log_level,
    )
