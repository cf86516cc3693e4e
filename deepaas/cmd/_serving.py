"""deepaas-run's HTTP half: the application, its server and its life.

:mod:`deepaas.cmd.run` imports this module only once the workers have
been started (``launch_early``): aiohttp and the API take about a third of
a second to import, which the workers spend importing the model meanwhile
(docs/benchmarks.md, "Start-up").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import socket
from collections.abc import Iterator, Mapping, Sequence

from aiohttp import web
from oslo_config import cfg

from deepaas.api import create_app
from deepaas.api.access_log import access_log_options
from deepaas.api.debug import DebugCapture
from deepaas.api.protocol import (
    RateLimitedLoopErrors,
    answer_in_progress,
    connection_limit,
    harden_server,
    runner_options,
    watch_connections,
)
from deepaas.api.security.guard import guard_from_settings
from deepaas.api.settings import ApiSettings, ServerSettings
from deepaas.api.startup import Startup
from deepaas.cmd import OptionsError
from deepaas.cmd._settings import (
    RunSettings,
    api_settings,
    predict_job_settings,
    security_settings,
    server_settings,
    training_settings,
)
from deepaas.cmd.run import WORKER_STOP_TIMEOUT
from deepaas.engine import Executor
from deepaas.engine.devices import DevicePlan
from deepaas.engine.processes import freeze_startup_objects
from deepaas.model.loading import ModelSpec

LOG = logging.getLogger("deepaas.run")


async def serve(
    conf: cfg.ConfigOpts,
    run: RunSettings,
    level: int,
    debug_capture: DebugCapture | None,
    sock: socket.socket,
    specs: Sequence[ModelSpec],
    envs: DevicePlan,
    executors: dict[str, Executor],
) -> int:
    """Serve ``executors`` on ``sock`` until SIGTERM or SIGINT; the exit status.

    The HTTP, training and job settings are built here from ``conf``, once
    the workers have started.  Whatever fails before the server runs stops
    the executors, whose first workers may already be importing their models.
    """
    try:
        return await _serve(
            conf, run, level, debug_capture, sock, specs, envs, executors
        )
    except BaseException:
        for executor in executors.values():
            try:
                await executor.stop(timeout=WORKER_STOP_TIMEOUT)
            except Exception:
                LOG.debug("stopping %r failed", executor.spec.name, exc_info=True)
        raise


async def _serve(
    conf: cfg.ConfigOpts,
    run: RunSettings,
    level: int,
    debug_capture: DebugCapture | None,
    sock: socket.socket,
    specs: Sequence[ModelSpec],
    envs: DevicePlan,
    executors: dict[str, Executor],
) -> int:
    try:
        guard = guard_from_settings(security_settings(conf))
    except ValueError as exc:
        raise OptionsError(str(exc)) from None
    from deepaas.jobs import job_service_from_settings
    from deepaas.training import training_service_from_settings

    trainings = training_service_from_settings(
        specs, executors, training_settings(conf), envs
    )
    predict_jobs = job_service_from_settings(
        executors, predict_job_settings(conf), envs
    )
    settings = api_settings(conf)
    server = server_settings(conf)
    # The models warm in the background once the server answers: /health at
    # once, /ready with what start-up does, the other routes when they can.
    startup = Startup(
        executors,
        max_waiting=run.engine.max_waiting * len(executors),
    )
    app = create_app(
        executors,
        startup=startup,
        settings=settings,
        trainings=trainings,
        predict_jobs=predict_jobs,
        debug_capture=debug_capture,
        guard=guard,
        gpu_plan=envs,
        max_form_parts=server.max_form_parts,
    )
    limits = dataclasses.replace(
        server.limits,
        max_connections=connection_limit(server.limits.max_connections),
    )
    # Requests get --shutdown-timeout in answer_in_progress(); what aiohttp
    # waits for afterwards has been answered already.
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=1.0,
        **runner_options(limits),
        **access_log_options(app),
    )
    LOG.info("loading and warming %s", ", ".join(s.name for s in specs))
    try:
        await runner.setup()  # opens the store; the workers start warming
    except BaseException:
        # What started before the failure (the training store, the metrics'
        # chores) stops in order here, not in the garbage collector, which
        # would print tracebacks over the one-line error.
        try:
            await runner.cleanup()
        except Exception:
            LOG.debug("stopping after a failed start-up failed too", exc_info=True)
        raise
    harden_server(runner, limits)
    asyncio.get_running_loop().set_exception_handler(RateLimitedLoopErrors())
    try:
        with _stop_signals() as stop:
            site = web.SockSite(runner, sock)
            async with watch_connections(runner):
                await site.start()
                LOG.info(
                    "answering on port %d (/health, /ready) while the models warm",
                    sock.getsockname()[1],
                )
                if await _started_unless_stopped(startup, stop):
                    freeze_startup_objects()
                    _announce(server, settings, int(sock.getsockname()[1]), executors)
                    await stop.wait()
                if stop.is_set():
                    LOG.info(
                        "stopping: finishing requests in progress (at most %g s)",
                        server.shutdown_timeout,
                    )
                await site.stop()
                # Requests still waiting for the models are answered now.
                await startup.cancel()
                cut = await answer_in_progress(
                    runner,
                    server.shutdown_timeout,
                    "the server is stopping: this request did not finish within "
                    f"--shutdown-timeout ({server.shutdown_timeout:g} s)",
                )
            if cut:
                LOG.warning(
                    "answered 503 to %d requests still in progress after "
                    "--shutdown-timeout",
                    cut,
                )
            if predict_jobs is not None:  # interrupted, not failed by the
                await predict_jobs.close()  # workers' going away
            for executor in executors.values():
                await executor.stop(timeout=WORKER_STOP_TIMEOUT)
    finally:
        await runner.cleanup()
    if startup.error is not None and not stop.is_set():
        raise startup.error  # reported by _run in one line
    LOG.info("stopped")
    return 0


async def _started_unless_stopped(startup: Startup, stop: asyncio.Event) -> bool:
    """Wait for start-up to end or a stop signal; True when the models are warm."""
    finished = asyncio.ensure_future(startup.finished())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((finished, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (finished, stopped):
            task.cancel()
    return startup.started and not stop.is_set()


def _announce(
    server: ServerSettings,
    api: ApiSettings,
    port: int,
    executors: Mapping[str, Executor],
) -> None:
    base = f"http://{server.address}:{port}{api.base_path}"
    lines = [
        f"deepaas: serving {', '.join(executors)} on {base}",
        f"  V2 endpoint:    {base}/v2/",
        f"  API spec:       {base}/swagger.json (OpenAPI 3: {base}/openapi.json)",
    ]
    if api.doc_endpoint:
        lines.append(f"  Documentation:  {base}/api")
    lines.append(f"  Readiness:      {base}/ready")
    print("\n".join(lines), flush=True)
    for name, executor in executors.items():
        LOG.info("model %r ready: %s", name, executor.status())


@contextlib.contextmanager
def _stop_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM while the block runs.

    Installed before the server is announced, so that a signal sent as soon
    as the address is printed stops it cleanly instead of killing it.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
