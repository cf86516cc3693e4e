"""deepaas-run: serve the chosen models over the DEEPaaS V2 REST API."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence

from aiohttp import web
from oslo_config import cfg

from deepaas.api import ApiSettings, create_app
from deepaas.api.access_log import access_log_options
from deepaas.api.debug import DebugCapture
from deepaas.api.guard import Guard, guard_from_config
from deepaas.api.protocol import (
    RateLimitedLoopErrors,
    ServerLimits,
    answer_in_progress,
    connection_limit,
    harden_server,
    runner_options,
    watch_connections,
)
from deepaas.api.startup import Startup
from deepaas.cmd import fail
from deepaas.config import build_config
from deepaas.engine import Executor, build_executors, plan_from_config, probe_models
from deepaas.engine._process import children_skip_main_module, freeze_startup_objects
from deepaas.exceptions import DeepaasError, ModelLoadError
from deepaas.log import (
    WORKER_LOGGING_ENV,
    LoggingSetupError,
    setup_logging_from_config,
    worker_logging_settings,
)
from deepaas.model.loading import ModelSpec, available_models, select_models

LOG = logging.getLogger("deepaas.run")
PROG = "deepaas-run"
#: Seconds, past --shutdown-timeout, that stopping may take: workers still
#: busy are killed after WORKER_STOP_TIMEOUT, the rest is closing files.
WORKER_STOP_TIMEOUT = 2.0
SHUTDOWN_MARGIN = 5.0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``deepaas-run``; returns the exit status."""
    if argv is None:  # the console script: its workers need nothing of it
        children_skip_main_module()
    argv = sys.argv[1:] if argv is None else list(argv)
    debug_capture = DebugCapture() if "--debug-endpoint" in " ".join(argv) else None
    try:
        conf = build_config(
            argv,
            prog="deepaas-run",
            description="Serve machine-learning models over the DEEPaaS V2 API.",
        )
    except cfg.Error as exc:
        return fail(PROG, str(exc), 2)
    except SystemExit as exc:  # --help, --version or argparse usage errors
        return int(exc.code or 0)
    if not conf.debug_endpoint:
        debug_capture = None
    elif debug_capture is None:
        debug_capture = DebugCapture()
    if debug_capture is not None:
        debug_capture.install()
    try:
        return _run(conf, debug_capture)
    finally:
        if debug_capture is not None:
            debug_capture.uninstall()


def _run(conf: cfg.ConfigOpts, debug_capture: DebugCapture | None) -> int:
    try:
        level = setup_logging_from_config(conf, PROG)
    except LoggingSetupError as exc:
        return fail(PROG, str(exc), 2)
    if debug_capture is not None and (
        conf.log_file or conf.log_dir or conf.log_config_append
    ):
        # setup_logging() replaced the root handlers; a log that goes to a
        # file (not to the captured stderr) reaches /debug/ through this one.
        logging.getLogger().addHandler(debug_capture)
    try:
        guard = guard_from_config(conf)
    except ValueError as exc:
        return fail(PROG, str(exc), 2)
    try:
        # Bound before the models load: a port in use is reported at once,
        # not after minutes of importing and warming a big model.
        sock = listening_socket(conf.listen_ip, conf.listen_port)
    except OSError as exc:
        return fail(PROG, _listen_error(conf.listen_ip, conf.listen_port, exc))
    # Spawned workers inherit the environment: they log where the server
    # does (and to the captured stderr too, for /debug/).
    previous = os.environ.get(WORKER_LOGGING_ENV)
    os.environ[WORKER_LOGGING_ENV] = worker_logging_settings(
        conf, PROG, also_stderr=debug_capture is not None
    )
    try:
        status = asyncio.run(_serve(conf, level, debug_capture, sock, guard))
        _leave_hung_threads(status)
        return status
    except DeepaasError as exc:
        return fail(PROG, exc.message)
    except (ValueError, OSError) as exc:
        return fail(PROG, str(exc))
    finally:
        sock.close()
        if previous is None:
            os.environ.pop(WORKER_LOGGING_ENV, None)
        else:
            os.environ[WORKER_LOGGING_ENV] = previous


def _leave_hung_threads(status: int) -> None:
    """Exit now when a model call still runs in one of the server's threads.

    A thread cannot be stopped, and Python waits for every pool thread at
    exit: a hung in-process call (``--workers 0``, ``"thread"`` models)
    would hold the process long past ``--shutdown-timeout``.  Its request
    has been answered already.
    """
    hung = [
        thread.name
        for thread in threading.enumerate()
        if thread.name.startswith("deepaas-")
        and thread.is_alive()
        and not thread.daemon
    ]
    if not hung:
        return
    LOG.warning(
        "exiting without waiting for model calls still running in %s",
        ", ".join(sorted(hung)),
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening (port 0: any free one)."""
    infos = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _listen_error(host: str, port: int, exc: OSError) -> str:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is in use; stop what uses it, "
            "choose another --listen-port, or --listen-port 0 for a free one"
        )
    if exc.errno == errno.EACCES:
        return (
            f"cannot listen on {where}: permission denied (ports below 1024 "
            "need privileges); choose another --listen-port, or --listen-port 0"
        )
    return (
        f"cannot listen on {where} (--listen-ip, --listen-port): {exc.strerror or exc}"
    )


async def _serve(
    conf: cfg.ConfigOpts,
    level: int,
    debug_capture: DebugCapture | None,
    sock: socket.socket,
    guard: Guard,
) -> int:
    specs = select_models(conf.model_name, available_models(), all_when_unnamed=True)
    if not conf.model_name and len(specs) > 1:
        specs = await _loadable(specs)
    envs = await plan_from_config(specs, conf, describe_in_workers=True)
    executors = build_executors(
        specs,
        workers=conf.workers,
        warm=conf.warm,
        max_queue=conf.max_queue,
        predict_timeout=conf.predict_timeout,
        ready_stall_timeout=conf.ready_stall_timeout,
        worker_envs=envs,
        log_level=level,
    )
    from deepaas.jobs import job_service_from_config
    from deepaas.training import training_service_from_config

    trainings = training_service_from_config(specs, executors, conf, envs)
    predict_jobs = job_service_from_config(executors, conf)
    settings = ApiSettings(
        predict_endpoint=conf.predict_endpoint,
        train_endpoint=conf.train_endpoint,
        debug_endpoint=conf.debug_endpoint,
        doc_endpoint=conf.doc_endpoint,
        base_path=conf.base_path,
        client_max_size=conf.client_max_size,
        upload_max_size=conf.upload_max_size,
        metrics=conf.metrics,
        access_log=conf.access_log,
        provenance_log=conf.provenance_log,
    )
    # The models warm in the background once the server answers: /health at
    # once, /ready with what start-up does, the other routes when they can.
    startup = Startup(
        executors,
        max_waiting=(conf.max_queue or 64 * max(conf.workers, 1)) * len(executors),
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
        max_form_parts=conf.max_form_parts,
    )
    limits = ServerLimits(
        header_timeout=conf.header_timeout,
        body_timeout=conf.body_timeout,
        keepalive_timeout=conf.keepalive_timeout,
        max_connections=connection_limit(conf.max_connections),
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
                    _announce(conf, int(sock.getsockname()[1]), executors)
                    await stop.wait()
                if stop.is_set():
                    LOG.info(
                        "stopping: finishing requests in progress (at most %g s)",
                        conf.shutdown_timeout,
                    )
                await site.stop()
                # Requests still waiting for the models are answered now.
                await startup.cancel()
                cut = await answer_in_progress(
                    runner,
                    conf.shutdown_timeout,
                    "the server is stopping: this request did not finish within "
                    f"--shutdown-timeout ({conf.shutdown_timeout:g} s)",
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


async def _loadable(specs: Sequence[ModelSpec]) -> list[ModelSpec]:
    """The models, served without being named, that can be loaded.

    Nobody asked for a broken one, so it must not stop the others: each is
    imported once in a probe process; one that fails is logged and left out.
    """
    results = await asyncio.gather(
        *(probe_models([spec]) for spec in specs), return_exceptions=True
    )
    good = []
    for spec, result in zip(specs, results, strict=True):
        if isinstance(result, DeepaasError):
            LOG.error("model %r is not served: %s", spec.name, result.message)
        elif isinstance(result, BaseException):
            raise result
        else:
            good.append(spec)
    if not good:
        raise ModelLoadError(
            "none of the installed models could be loaded; see the errors above"
        )
    return good


def _announce(
    conf: cfg.ConfigOpts, port: int, executors: Mapping[str, Executor]
) -> None:
    host = conf.listen_ip
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}{ApiSettings(base_path=conf.base_path).base_path}"
    lines = [
        f"deepaas: serving {', '.join(executors)} on {base}",
        f"  V2 endpoint:    {base}/v2/",
        f"  API spec:       {base}/swagger.json (OpenAPI 3: {base}/openapi.json)",
    ]
    if conf.doc_endpoint:
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


if __name__ == "__main__":
    sys.exit(main())
