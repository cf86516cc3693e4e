"""deepaas-run: serve the chosen models over the DEEPaaS V2 REST API."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from oslo_config import cfg

from deepaas.cmd import OptionsError, fail
from deepaas.cmd._settings import RunSettings, run_settings
from deepaas.config import build_config
from deepaas.engine import executors_from_settings, plan_from_settings, probe_models
from deepaas.engine.in_process import MODEL_THREAD_PREFIX
from deepaas.engine.processes import children_skip_main_module
from deepaas.exceptions import DeepaasError, ModelLoadError
from deepaas.log import (
    WORKER_LOGGING_ENV,
    LoggingSetupError,
    setup_logging_from_settings,
    worker_logging_settings,
)
from deepaas.model.loading import ModelSpec, available_models, select_models

if TYPE_CHECKING:  # the HTTP stack is imported once the workers have started
    from deepaas.api.debug import DebugCapture

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
    debug_capture = _debug_capture() if "--debug-endpoint" in " ".join(argv) else None
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
    try:
        settings = run_settings(conf)
    except ValueError as exc:
        return fail(PROG, str(exc), 2)
    if not settings.debug_endpoint:
        debug_capture = None
    elif debug_capture is None:
        debug_capture = _debug_capture()
    if debug_capture is not None:
        debug_capture.install()
    try:
        return _run(conf, settings, debug_capture)
    finally:
        if debug_capture is not None:
            debug_capture.uninstall()


def _debug_capture() -> DebugCapture:
    """What ``/debug/`` shows: the server's own output, captured from the start."""
    from deepaas.api.debug import DebugCapture

    return DebugCapture()


def _run(
    conf: cfg.ConfigOpts, settings: RunSettings, debug_capture: DebugCapture | None
) -> int:
    try:
        level = setup_logging_from_settings(settings.logging, PROG)
    except LoggingSetupError as exc:
        return fail(PROG, str(exc), 2)
    if debug_capture is not None and settings.logging.to_file:
        # setup_logging() replaced the root handlers; a log that goes to a
        # file (not to the captured stderr) reaches /debug/ through this one.
        logging.getLogger().addHandler(debug_capture)
    try:
        # Bound before the models load: a port in use is reported at once,
        # not after minutes of importing and warming a big model.  It
        # accepts connections once the server answers them (/health at
        # once), not while a probe imports the models.
        sock = bound_socket(settings.listen_ip, settings.listen_port)
    except OSError as exc:
        return fail(PROG, _listen_error(settings.listen_ip, settings.listen_port, exc))
    # Spawned workers inherit the environment: they log where the server
    # does (and to the captured stderr too, for /debug/).
    previous = os.environ.get(WORKER_LOGGING_ENV)
    os.environ[WORKER_LOGGING_ENV] = worker_logging_settings(
        settings.logging, PROG, also_stderr=debug_capture is not None
    )
    try:
        status = asyncio.run(_serve(conf, settings, level, debug_capture, sock))
        _leave_hung_threads(status)
        return status
    except OptionsError as exc:
        return fail(PROG, str(exc), 2)
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
    has been answered already.  Only the model's threads count: the
    store's thread finishing its last write (bounded by SQLite's busy
    timeout) is waited for, as Python does at exit.
    """
    hung = [
        thread.name
        for thread in threading.enumerate()
        if thread.name.startswith(MODEL_THREAD_PREFIX)
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


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: any free one).

    It does not listen yet: the server's site does when it starts answering,
    so that from the moment the port accepts a connection, ``/health``
    answers it, and until then a client's connection is refused rather than
    left waiting unanswered.
    """
    infos = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
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
    settings: RunSettings,
    level: int,
    debug_capture: DebugCapture | None,
    sock: socket.socket,
) -> int:
    names = settings.model_names
    specs = select_models(names, available_models(), all_when_unnamed=True)
    if not names and len(specs) > 1:
        specs = await _loadable(specs)
    envs = await plan_from_settings(
        specs,
        settings.engine,
        trains_locally=settings.trains_locally,
        describe_in_workers=True,
    )
    executors = executors_from_settings(
        specs, settings.engine, worker_envs=envs, log_level=level
    )
    for executor in executors.values():
        executor.launch_early()
    # Only now the HTTP half: its imports take about a third of a second,
    # which the workers just started spend importing the model.
    from deepaas.cmd._serving import serve

    return await serve(
        conf, settings, level, debug_capture, sock, specs, envs, executors
    )


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


if __name__ == "__main__":
    sys.exit(main())
