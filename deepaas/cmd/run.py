"""deepaas-run: serve the chosen models over the DEEPaaS V2 REST API."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Mapping, Sequence

from aiohttp import web
from oslo_config import cfg

from deepaas.api import ApiSettings, create_app
from deepaas.api.debug import DebugCapture
from deepaas.api.protocol import answer_protocol_errors_in_json
from deepaas.cmd import fail
from deepaas.config import build_config
from deepaas.exceptions import DeepaasError
from deepaas.log import setup_logging
from deepaas.model._process import freeze_startup_objects
from deepaas.model.execution import Executor
from deepaas.model.executors import build_executors
from deepaas.model.loading import available_models, select_models

LOG = logging.getLogger("deepaas.run")
PROG = "deepaas-run"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``deepaas-run``; returns the exit status."""
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
    level = setup_logging(
        level=conf.log_level, debug=conf.debug, log_file=conf.log_file
    )
    if debug_capture is not None and conf.log_file:
        # setup_logging() replaced the root handlers; a log that goes to a
        # file (not to the captured stderr) reaches /debug/ through this one.
        logging.getLogger().addHandler(debug_capture)
    try:
        return asyncio.run(_serve(conf, level, debug_capture))
    except DeepaasError as exc:
        return fail(PROG, exc.message)
    except (ValueError, OSError) as exc:
        return fail(PROG, str(exc))
    finally:
        if debug_capture is not None:
            debug_capture.uninstall()


async def _serve(conf: cfg.ConfigOpts, level: int,
                 debug_capture: DebugCapture | None) -> int:
    specs = select_models(conf.model_name, available_models())
    from deepaas.model.devices import plan_from_config

    envs = await plan_from_config(specs, conf)
    executors = build_executors(
        specs,
        workers=conf.workers,
        warm=conf.warm,
        max_queue=conf.max_queue,
        predict_timeout=conf.predict_timeout,
        worker_envs=envs,
        log_level=level,
    )
    from deepaas.training import training_service_from_config

    trainings = training_service_from_config(specs, executors, conf, envs)
    settings = ApiSettings(
        predict_endpoint=conf.predict_endpoint,
        train_endpoint=conf.train_endpoint,
        debug_endpoint=conf.debug_endpoint,
        doc_endpoint=conf.doc_endpoint,
        base_path=conf.base_path,
        client_max_size=conf.client_max_size,
    )
    app = create_app(
        executors, settings=settings, trainings=trainings, debug_capture=debug_capture
    )
    access_log = None if level > logging.DEBUG else logging.getLogger("aiohttp.access")
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=conf.shutdown_timeout,
        access_log=access_log,
    )
    LOG.info("loading and warming %s", ", ".join(s.name for s in specs))
    await runner.setup()  # starts and warms every worker
    answer_protocol_errors_in_json(runner)
    freeze_startup_objects()
    try:
        site = web.TCPSite(runner, conf.listen_ip, conf.listen_port)
        await site.start()
        port = _bound_port(site, conf.listen_port)
        _announce(conf, port, executors)
        await _wait_for_signal()
        LOG.info("stopping: finishing requests in progress (at most %g s)",
                 conf.shutdown_timeout)
    finally:
        await runner.cleanup()
    LOG.info("stopped")
    return 0


def _bound_port(site: web.TCPSite, default: int) -> int:
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    for sock in sockets:
        return int(sock.getsockname()[1])
    return default


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


async def _wait_for_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


if __name__ == "__main__":
    sys.exit(main())
