"""The typed settings of each layer, built from deepaas-run's options.

This is the one place where the oslo.config object is read: every option
is copied once, under the name its layer uses, into that layer's frozen
dataclass, which checks it.  The layers below never see the config object.

What deepaas-run needs before its workers start (:class:`RunSettings`) is
built at once; the HTTP, training and job settings by the HTTP half of
deepaas-run (:mod:`deepaas.cmd._serving`), after the workers have started:
importing :mod:`deepaas.api` and :mod:`deepaas.training` takes a good part
of a second that the workers spend importing the model meanwhile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oslo_config import cfg

from deepaas.engine.settings import EngineSettings
from deepaas.log import LoggingSettings

if TYPE_CHECKING:
    from deepaas.api.security.settings import SecuritySettings
    from deepaas.api.settings import ApiSettings, ServerSettings
    from deepaas.training.settings import (
        PredictJobSettings,
        SlurmSettings,
        TrainingSettings,
    )


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """What deepaas-run reads before its workers start."""

    model_names: tuple[str, ...]
    listen_ip: str
    listen_port: int
    debug_endpoint: bool
    #: Trainings run as processes of this machine (a GPU is kept for them).
    trains_locally: bool
    engine: EngineSettings
    logging: LoggingSettings


def run_settings(conf: cfg.ConfigOpts) -> RunSettings:
    """The settings deepaas-run starts with."""
    return RunSettings(
        model_names=tuple(conf.model_name),
        listen_ip=conf.listen_ip,
        listen_port=conf.listen_port,
        debug_endpoint=conf.debug_endpoint,
        trains_locally=conf.train_endpoint and conf.train_backend != "slurm",
        engine=engine_settings(conf),
        logging=logging_settings(conf),
    )


def engine_settings(conf: cfg.ConfigOpts) -> EngineSettings:
    """The ``--workers``, ``--gpus``, queue and timeout options."""
    return EngineSettings(
        workers=conf.workers,
        workers_per_gpu=conf.workers_per_gpu,
        gpus=str(conf.gpus),
        warm=conf.warm,
        max_queue=conf.max_queue,
        call_timeout=conf.predict_timeout,
        ready_stall_timeout=conf.ready_stall_timeout,
    )


def logging_settings(
    conf: cfg.ConfigOpts | _Overlay, *, level: str | None = None
) -> LoggingSettings:
    """The logging options; ``level`` replaces ``--log-level`` (deepaas-cli's
    default differs from the server's)."""
    return LoggingSettings(
        level=level or conf.log_level,
        debug=conf.debug,
        log_file=conf.log_file,
        log_dir=conf.log_dir,
        watch_log_file=conf.watch_log_file,
        date_format=conf.log_date_format,
        use_json=conf.use_json,
        use_syslog=conf.use_syslog,
        syslog_facility=conf.syslog_log_facility,
        use_journal=conf.use_journal,
        config_append=conf.log_config_append,
    )


def api_settings(conf: cfg.ConfigOpts) -> ApiSettings:
    """What the API serves: endpoints, base path, body limits, logs."""
    from deepaas.api.settings import ApiSettings

    return ApiSettings(
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


def server_settings(conf: cfg.ConfigOpts) -> ServerSettings:
    """How the HTTP server listens, times requests out and stops."""
    from deepaas.api.protocol import ServerLimits
    from deepaas.api.settings import ServerSettings

    return ServerSettings(
        listen_ip=conf.listen_ip,
        shutdown_timeout=conf.shutdown_timeout,
        max_form_parts=conf.max_form_parts,
        limits=ServerLimits(
            header_timeout=conf.header_timeout,
            body_timeout=conf.body_timeout,
            keepalive_timeout=conf.keepalive_timeout,
            max_connections=conf.max_connections,
        ),
    )


def security_settings(conf: cfg.ConfigOpts) -> SecuritySettings:
    """The Host, Origin, token and OIDC options."""
    from deepaas.api.security.settings import SecuritySettings

    return SecuritySettings(
        listen_ip=conf.listen_ip,
        allowed_hosts=tuple(conf.allowed_hosts or ()),
        allowed_origins=tuple(conf.allowed_origins),
        auth_token_file=conf.auth_token_file,
        auth_open=tuple(conf.auth_open),
        oidc_issuer=conf.oidc_issuer,
        oidc_audience=conf.oidc_audience,
        oidc_jwks_url=conf.oidc_jwks_url,
        oidc_jwks_file=conf.oidc_jwks_file,
        oidc_algorithms=tuple(conf.oidc_algorithms),
        oidc_leeway=conf.oidc_leeway,
        oidc_require=tuple(conf.oidc_require),
    )


def _log_level(conf: cfg.ConfigOpts) -> int:
    return logging_settings(conf).numeric_level


def _state_dir(conf: cfg.ConfigOpts) -> Path:
    from deepaas.training.settings import default_state_dir

    return Path(conf.state_dir) if conf.state_dir else default_state_dir()


def slurm_settings(conf: cfg.ConfigOpts) -> SlurmSettings:
    """The ``--slurm-*`` options."""
    from deepaas.training.settings import SlurmSettings

    return SlurmSettings(
        partition=conf.slurm_partition or "",
        account=conf.slurm_account or "",
        qos=conf.slurm_qos or "",
        time=conf.slurm_time or "",
        cpus=conf.slurm_cpus,
        mem=conf.slurm_mem or "",
        gpu_request=conf.slurm_gpu_request,
        sbatch_lines=tuple(conf.slurm_sbatch_line),
        setup=tuple(conf.slurm_setup),
        python=conf.slurm_python or "",
        poll_interval=conf.slurm_poll_interval,
    )


def training_settings(conf: cfg.ConfigOpts) -> TrainingSettings | None:
    """The trainings' settings; None with ``--train-endpoint false``."""
    from deepaas.training.settings import TrainingSettings

    if not conf.train_endpoint:
        return None
    return TrainingSettings(
        state_dir=_state_dir(conf),
        max_concurrent=conf.max_concurrent_trainings,
        max_trainings=conf.max_trainings,
        timeout=conf.train_timeout,
        cancel_grace=conf.train_cancel_grace,
        keep=conf.keep_trainings,
        keep_days=conf.keep_trainings_days,
        max_log_bytes=conf.train_log_max_bytes,
        log_level=_log_level(conf),
        backend=conf.train_backend,
        slurm=slurm_settings(conf),
    )


def predict_job_settings(conf: cfg.ConfigOpts) -> PredictJobSettings | None:
    """The prediction jobs' settings; None with ``--predict-endpoint false``."""
    from deepaas.training.settings import PredictJobSettings

    if not conf.predict_endpoint:
        return None
    return PredictJobSettings(
        state_dir=_state_dir(conf),
        max_jobs=conf.max_predict_jobs,
        max_stored=conf.max_stored_predict_jobs,
        max_concurrent=conf.max_concurrent_predict_jobs,
        keep=conf.keep_trainings,
        keep_days=conf.keep_trainings_days,
        log_level=_log_level(conf),
        backend=conf.train_backend,
        slurm=slurm_settings(conf),
    )


@dataclasses.dataclass(frozen=True)
class PredictSettings:
    """What deepaas-predict reads from its command line and config file."""

    #: The names given (``--model-name``, the file's, ``$DEEPAAS_V2_MODEL``).
    model_names: tuple[str, ...]
    log_level: str
    engine: EngineSettings


def predict_settings(
    *,
    config_file: str | None,
    model_name: str | None,
    workers: int,
    gpus: str | None,
    warm: bool | None,
    log_level: str | None,
    prog: str,
) -> PredictSettings:
    """deepaas-predict's settings: its own options over those of
    ``config_file`` (deepaas-run's), read as deepaas-run reads them.

    Raises ``cfg.Error`` or ``SystemExit`` for a bad config file, and
    ValueError naming the option for a bad value.
    """
    from deepaas.config import build_config
    from deepaas.model.loading import model_names_from_environment

    conf = (
        build_config([], prog=prog, config_files=[config_file]) if config_file else None
    )
    names: list[str] = [model_name] if model_name else []
    if not names and conf is not None:
        names = list(conf.model_name)
    if not names:
        names = model_names_from_environment()
    return PredictSettings(
        model_names=tuple(names),
        log_level=log_level or (conf.log_level if conf is not None else "INFO"),
        engine=EngineSettings(
            workers=workers,
            workers_per_gpu=conf.workers_per_gpu if conf is not None else 1,
            gpus=gpus or (conf.gpus if conf is not None else "auto"),
            warm=warm if warm is not None else (conf.warm if conf else True),
        ),
    )


class _Overlay:
    """Options given on a command line (by destination) over a ConfigOpts."""

    def __init__(self, given: Mapping[str, Any], conf: cfg.ConfigOpts) -> None:
        self._given = given
        self._conf = conf

    def __getattr__(self, name: str) -> Any:
        if name in self._given:
            return self._given[name]
        return getattr(self._conf, name)


@dataclasses.dataclass(frozen=True)
class CliSettings:
    """The options that mean something for one deepaas-cli call."""

    #: The names given (``--model-name``, the files', ``$DEEPAAS_V2_MODEL``).
    model_names: tuple[str, ...]
    warm: bool
    logging: LoggingSettings


def cli_settings(given: Mapping[str, Any], *, prog: str) -> CliSettings:
    """deepaas-cli's settings: the options ``given`` (by destination, already
    converted and checked by its parser) over the config files it names,
    which are read as deepaas-run reads them.

    deepaas-cli logs warnings only unless a level is asked for, on the
    command line or in a file.  Raises ``cfg.Error`` for a bad file.
    """
    from deepaas.config import build_config

    conf = build_config(
        [],
        prog=prog,
        config_files=given.get("config_file", []),
        config_dirs=given.get("config_dir", []),
    )
    options = _Overlay(given, conf)
    location = conf.get_location("log_level")
    level_set = "log_level" in given or (
        location is not None and location.location is not cfg.Locations.opt_default
    )
    return CliSettings(
        model_names=tuple(given.get("model_name") or conf.model_name),
        warm=options.warm,
        logging=logging_settings(options, level=None if level_set else "WARNING"),
    )
