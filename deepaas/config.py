"""Options of deepaas, read with oslo.config from the command line and files.

Every option is both a command-line flag and a ``[DEFAULT]`` entry of a
config file.  Nothing is registered at import time: :func:`build_config`
makes a fresh :class:`oslo_config.cfg.ConfigOpts` per run, so tests and
embedding applications never share global state.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from oslo_config import cfg

from deepaas._options_help import format_help
from deepaas._security_options import security_opts
from deepaas.model.loading import MODEL_ENV_VAR, model_names_from_environment
from deepaas.version import version_line

DEFAULT_LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

_server_opts = [
    cfg.StrOpt(
        "listen-ip",
        metavar="IP",
        default="127.0.0.1",
        help="IP address the API listens on. Use 0.0.0.0 to listen on every interface.",
    ),
    cfg.PortOpt("listen-port", default=5000, help="TCP port the API listens on."),
    cfg.MultiStrOpt(
        "model-name",
        metavar="NAME",
        default=[],
        help="Name of the model to serve, as registered in the entry-point group "
        "'deepaas.v2.model'. Repeat the option to serve several models at once. "
        "A name on the command line replaces those of a config file. Default: "
        "the environment variable DEEPAAS_V2_MODEL (several names may be "
        "separated by commas), else every installed model (with a warning when "
        "there are several; the built-in demo model only when nothing else is "
        "installed).",
    ),
    cfg.IntOpt(
        "workers",
        short="p",  # DEEPaaS 2.x's
        default=1,
        min=0,
        help="Worker processes per model that run predictions. 0 runs the model "
        "inside the API process (threads), which suits light or thread-safe "
        "models; N >= 1 runs N spawned processes, each warmed once.",
    ),
    cfg.BoolOpt(
        "warm",
        default=True,
        help="Call the model's warm() once in every worker before serving.",
    ),
    cfg.BoolOpt("predict-endpoint", default=True, help="Serve the predict endpoint."),
    cfg.BoolOpt("train-endpoint", default=True, help="Serve the train endpoints."),
    cfg.BoolOpt(
        "debug-endpoint",
        default=False,
        help="Serve /v2/debug/ (and /debug/) with the captured standard output, "
        "standard error and log of the server.",
    ),
    cfg.BoolOpt(
        "doc-endpoint",
        default=True,
        help="Serve the Swagger UI at /api (the API descriptions are always served).",
    ),
    cfg.IntOpt(
        "client-max-size",
        default=16 * 1024 * 1024,
        min=0,
        help="Largest request body read into memory, in bytes: a JSON or "
        "url-encoded body, or the text fields of a multipart body (413 "
        "beyond). Parsing takes about 4 times this per request; 0 means no "
        "limit (unsafe where clients are not trusted).",
    ),
    cfg.IntOpt(
        "upload-max-size",
        default=1024 * 1024 * 1024,
        min=0,
        help="Largest multipart/form-data body, in bytes (413 beyond). Its "
        "files are streamed to temporary files on disk; 0 means no limit.",
    ),
    cfg.IntOpt(
        "max-form-parts",
        default=1000,
        min=0,
        help="Most parts of a multipart/form-data body, files and fields "
        "together, and most fields of a url-encoded form (413 beyond, without "
        "reading the rest): each part costs a temporary file or a parsed "
        "value, however small it is. 0 means no limit.",
    ),
    cfg.StrOpt(
        "base-path",
        metavar="PATH",
        default="",
        help="Serve everything under this path prefix, e.g. /deepaas behind a "
        "reverse proxy.",
    ),
    cfg.BoolOpt(
        "metrics",
        default=True,
        help="Serve Prometheus metrics at /metrics: requests and their "
        "durations per model, endpoint and status, workers, queues, restarts, "
        "timeouts, batch sizes, trainings and GPUs (docs/operating.md). false: "
        "no /metrics, and nothing is counted per request.",
    ),
    cfg.FloatOpt(
        "shutdown-timeout",
        default=30.0,
        min=0,
        help="Seconds that in-flight requests get to finish after SIGINT or "
        "SIGTERM; those still running are then answered 503, and the server "
        "exits within a few seconds more (docs/deploying.md).",
    ),
    cfg.FloatOpt(
        "header-timeout",
        default=30.0,
        min=0,
        help="Seconds a client has to send a request's line and headers, from "
        "connecting or from the request's first byte; else 408 and the "
        "connection is closed. 0 means no limit.",
    ),
    cfg.FloatOpt(
        "body-timeout",
        default=60.0,
        min=0,
        help="Seconds a request body may stop arriving before the request is "
        "answered 408. 0 means no limit.",
    ),
    cfg.FloatOpt(
        "keepalive-timeout",
        default=75.0,
        min=0,
        help="Seconds an idle kept-alive connection stays open.",
    ),
    cfg.IntOpt(
        "max-connections",
        default=1000,
        min=1,
        help="Open connections served at once; one more is answered 503 and "
        "closed. Lowered to what the limit on open files allows (ulimit -n).",
    ),
]

_logging_opts = [
    cfg.BoolOpt(
        "debug",
        short="d",
        default=False,
        help="Log at DEBUG level and show tracebacks in the log.",
    ),
    cfg.StrOpt(
        "log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        ignore_case=True,
        help="Level of the server log (overridden by --debug).",
    ),
    cfg.BoolOpt(
        "access-log",
        default=True,
        help="Log one line per request (client, request line, status, size, "
        "referer, user agent, seconds taken, request id) at INFO on the logger "
        "aiohttp.access, as DEEPaaS 2.x did (docs/operating.md).",
    ),
    cfg.StrOpt(
        "provenance-log",
        metavar="PATH",
        help="Append a provenance record of every answered prediction to this "
        "JSON Lines file (W3C PROV-JSON: model package and version, arguments, "
        "SHA-256 of inputs and answer, times, host, devices; docs/provenance.md). "
        "Off by default.",
    ),
    # The options below are DEEPaaS 2.x's (oslo.log's), with its names, so
    # that its command lines and config files keep working.
    cfg.StrOpt(
        "log-file",
        metavar="PATH",
        deprecated_name="logfile",
        help="Write the log to this file (relative to --log-dir when that is "
        "given) instead of standard error.",
    ),
    cfg.StrOpt(
        "log-dir",
        metavar="DIR",
        deprecated_name="logdir",
        help="Directory of the log file: a relative --log-file is taken from "
        "here; without --log-file the log goes to DIR/<program>.log, e.g. "
        "DIR/deepaas-run.log.",
    ),
    cfg.BoolOpt(
        "watch-log-file",
        default=False,
        help="Reopen the log file when it is moved or removed (for external "
        "log rotation).",
    ),
    cfg.StrOpt(
        "log-date-format",
        default=DEFAULT_LOG_DATE_FORMAT,
        metavar="DATE_FORMAT",
        help="strftime format of the time in each log line.",
    ),
    cfg.BoolOpt(
        "use-json",
        default=False,
        help="Write each log record as one line of JSON.",
    ),
    cfg.BoolOpt(
        "use-syslog",
        default=False,
        help="Send the log to the local syslog (/dev/log) as well.",
    ),
    cfg.StrOpt(
        "syslog-log-facility",
        default="LOG_USER",
        help="Syslog facility of the log lines, e.g. LOG_USER or LOG_LOCAL0.",
    ),
    cfg.BoolOpt(
        "use-journal",
        default=False,
        help="Send the log to the systemd journal (native protocol, with the "
        "record's fields) as well.",
    ),
    cfg.StrOpt(
        "log-config-append",
        metavar="PATH",
        deprecated_name="log-config",
        help="A Python logging configuration file (the logging.config "
        "fileConfig format, or JSON for dictConfig); when given, it alone "
        "configures the log and the other logging options are ignored.",
    ),
]

_training_opts = [
    cfg.StrOpt(
        "state-dir",
        metavar="DIR",
        sample_default="$XDG_STATE_HOME/deepaas (~/.local/state/deepaas)",
        help="Directory of the training store (an SQLite database) and of "
        "the trainings' logs and files; created on first use.",
    ),
    cfg.IntOpt(
        "max-concurrent-trainings",
        default=0,
        min=0,
        help="Trainings that may run at once per server; further ones wait in "
        "order with status 'queued'. 0 means no limit: every training starts "
        "at once, as in DEEPaaS 2.x.",
    ),
    cfg.IntOpt(
        "max-trainings",
        default=32,
        min=0,
        help="Unfinished trainings (queued and running) this server holds at "
        "once; beyond it POST .../train/ answers 503 with Retry-After. "
        "0 means no limit.",
    ),
    cfg.FloatOpt(
        "train-timeout",
        default=0,
        min=0,
        help="Seconds after which a running training is stopped and marked as "
        "an error; 0 means no limit.",
    ),
    cfg.FloatOpt(
        "train-cancel-grace",
        default=10.0,
        min=0,
        help="Seconds a cancelled training gets to stop after SIGTERM before it "
        "and its children are killed.",
    ),
    cfg.IntOpt(
        "keep-trainings",
        default=0,
        min=0,
        help="Keep at most this many finished trainings per model (the newest); "
        "0 keeps all.",
    ),
    cfg.FloatOpt(
        "keep-trainings-days",
        default=0,
        min=0,
        help="Forget finished trainings older than this many days; 0 keeps all.",
    ),
    cfg.IntOpt(
        "train-log-max-bytes",
        default=10 * 1024 * 1024,
        min=0,
        help="Largest size of a training's log, in bytes (at least 16384; 0 "
        "means no limit). A longer log keeps its first half and its most "
        "recent output, with a line saying how much was dropped between.",
    ),
    cfg.IntOpt(
        "max-predict-jobs",
        default=32,
        min=0,
        help="Unfinished prediction jobs (POST .../predict/ with Prefer: "
        "respond-async, queued and running) this server holds at once; beyond "
        "it a new job answers 503 with Retry-After. 0 means no limit.",
    ),
    cfg.IntOpt(
        "max-stored-predict-jobs",
        default=1000,
        min=0,
        help="Prediction jobs recorded in the state directory, finished ones "
        "with their results included; beyond it a new job answers 503 with "
        "Retry-After until some are deleted or forgotten by --keep-trainings "
        "and --keep-trainings-days. 0 means no limit.",
    ),
    cfg.IntOpt(
        "max-concurrent-predict-jobs",
        default=0,
        min=0,
        help="Prediction jobs handed to the models' workers at once; further "
        "ones wait in order with status 'queued'. 0 means no limit of their "
        "own: the workers' queue (--max-queue) bounds them.",
    ),
]

_slurm_opts = [
    cfg.StrOpt(
        "train-backend",
        default="local",
        choices=[
            ("local", "trainings run as processes of this server"),
            ("slurm", "each training is a SLURM batch job"),
        ],
        help="Where trainings run: 'local' (processes of this server) or "
        "'slurm' (one SLURM batch job each, submitted with sbatch; the state "
        "directory must be on a filesystem the compute nodes share).",
    ),
    cfg.StrOpt("slurm-partition", metavar="NAME",
               help="SLURM partition of the training jobs (sbatch --partition)."),
    cfg.StrOpt("slurm-account", metavar="NAME",
               help="SLURM account charged for the jobs (sbatch --account)."),
    cfg.StrOpt("slurm-qos", metavar="NAME",
               help="SLURM quality of service of the jobs (sbatch --qos)."),
    cfg.StrOpt("slurm-time", metavar="TIME",
               help="Time limit of each job in SLURM's format, e.g. 2-00:00:00 "
               "(sbatch --time); past it SLURM stops the training (status "
               "error, TIMEOUT)."),
    cfg.IntOpt("slurm-cpus", default=0, min=0,
               help="CPUs of each job (sbatch --cpus-per-task); 0 leaves "
               "SLURM's default."),
    cfg.StrOpt("slurm-mem", metavar="SIZE",
               help="Memory of each job, e.g. 16G (sbatch --mem)."),
    cfg.StrOpt("slurm-gpu-request", default="gpus",
               choices=[("gpus", "sbatch --gpus=N"), ("gres", "sbatch --gres=gpu:N")],
               help="How a model's resources={'gpus': N} is asked for: "
               "'gpus' (--gpus=N) or 'gres' (--gres=gpu:N)."),
    cfg.MultiStrOpt("slurm-sbatch-line", metavar="OPTION", default=[],
                    help="An extra '#SBATCH' line of every job, e.g. "
                    "--constraint=a100; repeat for several."),
    cfg.MultiStrOpt("slurm-setup", metavar="LINE", default=[],
                    help="A shell line each job runs before the training, e.g. "
                    "'module load CUDA' or 'source /shared/venv/bin/activate'; "
                    "repeat for several."),
    cfg.StrOpt("slurm-python", metavar="PATH",
               help="Python interpreter that runs the training in the job; it "
               "must reach the same deepaas and model. Default: the one "
               "running deepaas-run."),
    cfg.FloatOpt("slurm-poll-interval", default=5.0, min=0.05,
                 help="Seconds between two questions to SLURM about the jobs."),
]

_execution_opts = [
    cfg.StrOpt(
        "gpus",
        metavar="auto|none|LIST",
        default="auto",
        help="GPUs the workers may use: 'auto' (every visible GPU), 'none', or "
        "a comma-separated list of indices among the visible ones, e.g. 0,2.",
    ),
    cfg.IntOpt(
        "workers-per-gpu",
        default=1,
        min=1,
        help="Prediction workers placed on each GPU for models that use one.",
    ),
    cfg.IntOpt(
        "max-queue",
        default=0,
        min=0,
        help="Predictions that may wait for a free worker; beyond it the API "
        "answers 503 with Retry-After. 0 means 64 per worker.",
    ),
    cfg.FloatOpt(
        "predict-timeout",
        default=0,
        min=0,
        help="Seconds a prediction may take before it is answered with 504 and "
        "its worker is restarted; 0 means no limit. Recommended: a few times "
        "the model's slowest normal call (docs/engine.md).",
    ),
    cfg.FloatOpt(
        "ready-stall-timeout",
        default=60.0,
        min=0,
        help="Seconds with every worker of a model busy and none free to take "
        "a call after which /ready answers 503 'stalled' (a hung model); "
        "0 never reports a stall.",
    ),
]


#: The option groups of ``--help``, in order.
_GROUPS: tuple[tuple[str, list[cfg.Opt]], ...] = (
    ("server", _server_opts),
    ("logging", _logging_opts),
    ("trainings", _training_opts),
    ("execution", _execution_opts),
    ("security", security_opts),
    ("slurm", _slurm_opts),
)


def _all_opts() -> list[cfg.Opt]:
    return [opt for _, opts in _GROUPS for opt in opts]


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Options per group, for ``oslo-config-generator`` (entry point)."""
    return [("DEFAULT", _all_opts())]


def _is_bool(opt: cfg.Opt) -> bool:
    return isinstance(opt.type, cfg.types.Boolean)


def _bool_flag_names(opts: Sequence[cfg.Opt]) -> set[str]:
    return {opt.dest.replace("_", "-") for opt in opts if _is_bool(opt)}


TRUE_WORDS = {"true", "yes", "on", "1"}
FALSE_WORDS = {"false", "no", "off", "0"}


def normalize_bool_flags(argv: Sequence[str], names: set[str]) -> list[str]:
    """Accept ``--flag false``, ``--flag=true`` and ``--no-flag`` for booleans.

    oslo.config spells booleans ``--flag``/``--noflag``; users of the existing
    tool write ``--predict-endpoint false``, and deepaas-predict writes
    ``--no-warm``, so every spelling works in every tool.
    """
    result: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            result.extend(args[i:])
            break
        name, sep, value = arg.partition("=")
        if name.startswith("--no-") and name[5:] in names and not sep:
            result.append(f"--no{name[5:]}")
        elif name.startswith("--") and name[2:] in names:
            flag = name[2:]
            if not sep and i + 1 < len(args):
                word = args[i + 1].lower()
                if word in TRUE_WORDS | FALSE_WORDS:
                    value, sep = word, "="
                    i += 1
            if sep:
                word = value.lower()
                if word in TRUE_WORDS:
                    result.append(f"--{flag}")
                elif word in FALSE_WORDS:
                    result.append(f"--no{flag}")
                else:
                    raise cfg.Error(f"--{flag} takes true or false (got {value!r})")
            else:
                result.append(arg)
        else:
            result.append(arg)
        i += 1
    return result


def _model_names_given(argv: Sequence[str]) -> list[str]:
    """The ``--model-name`` values of the command line itself.

    oslo.config appends a multi-valued option's command-line values to those
    of the config files; a name given on the command line must replace them.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model-name", action="append", default=[])
    args = list(argv)
    if "--" in args:
        args = args[: args.index("--")]
    known, _ = parser.parse_known_args(args)
    return list(known.model_name)


def _wants_help(argv: Sequence[str]) -> bool:
    args = list(argv)
    if "--" in args:
        args = args[: args.index("--")]
    return "-h" in args or "--help" in args


def build_config(
    argv: Sequence[str] | None = None,
    *,
    prog: str = "deepaas-run",
    description: str | None = None,
    extra_cli_opts: Sequence[cfg.Opt] = (),
    environ: dict[str, str] | None = None,
    config_files: Sequence[str] = (),
    config_dirs: Sequence[str] = (),
) -> cfg.ConfigOpts:
    """Parse ``argv`` (and any ``--config-file``) into a new ConfigOpts.

    ``config_files`` and ``config_dirs`` are read as ``--config-file`` and
    ``--config-dir`` would be (by the tools whose own parser took those).
    ``--help`` prints :func:`format_help` and raises ``SystemExit(0)``, as
    argparse does.
    """
    env = os.environ if environ is None else environ
    argv = list(argv or [])
    if _wants_help(argv):
        groups = [*_GROUPS, *([("other", extra_cli_opts)] if extra_cli_opts else [])]
        sys.stdout.write(format_help(prog, description, groups))
        raise SystemExit(0)
    opts = [*_all_opts(), *extra_cli_opts]
    conf = cfg.ConfigOpts()
    conf.register_cli_opts(opts)
    # Given to oslo.config as its own options, which it reads in order (a
    # missing file or directory is an error, unlike its default ones).
    files = [f"--config-file={path}" for path in config_files]
    files += [f"--config-dir={path}" for path in config_dirs]
    conf(
        args=[*files, *normalize_bool_flags(argv, _bool_flag_names(opts))],
        project="deepaas",
        prog=prog,
        version=version_line(),
        description=description,
        default_config_files=[],
        default_config_dirs=[],
    )
    given = _model_names_given(argv)
    if given:
        conf.set_override("model_name", given)
    elif not conf.model_name and env.get(MODEL_ENV_VAR):
        conf.set_override("model_name", model_names_from_environment(env))
    return conf
