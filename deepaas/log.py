"""Logging set-up for the console scripts (never done on import).

The options are DEEPaaS 2.x's, which it took from oslo.log: a log file
(``--log-file``, ``--log-dir``, ``--watch-log-file``), JSON lines
(``--use-json``), syslog (``--use-syslog``, ``--syslog-log-facility``), the
systemd journal (``--use-journal``) and a logging configuration file of
one's own (``--log-config-append``).  They are implemented here with the
standard library, so that they need no extra dependency.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import logging.config
import logging.handlers
import os
import socket
import struct
import sys
import traceback
from typing import Any

FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
SYSLOG_SOCKET = "/dev/log"
JOURNAL_SOCKET = "/run/systemd/journal/socket"


class LoggingSetupError(ValueError):
    """A logging option that cannot be honoured (a usage error)."""


def numeric_level(level: str, *, debug: bool = False) -> int:
    """The number of ``--log-level`` (INFO if unknown); ``--debug`` means DEBUG.

    deepaas-run's own logging and the trainings it starts read the options
    the same way, so that both log at one level.
    """
    return logging.DEBUG if debug else getattr(logging, level.upper(), logging.INFO)


def setup_logging(
    *,
    level: str = "INFO",
    debug: bool = False,
    log_file: str | None = None,
    log_dir: str | None = None,
    watch_log_file: bool = False,
    date_format: str = DATE_FORMAT,
    use_json: bool = False,
    use_syslog: bool = False,
    syslog_facility: str = "LOG_USER",
    use_journal: bool = False,
    config_append: str | None = None,
    prog: str = "deepaas",
    syslog_address: str = SYSLOG_SOCKET,
    journal_socket: str = JOURNAL_SOCKET,
    label: str = "",
    also_stderr: bool = False,
) -> int:
    """Configure the root logger; return the numeric level chosen.

    ``label`` starts every text line (``worker[123] ``); ``also_stderr``
    keeps standard error as a destination beside a log file.

    Raises :class:`LoggingSetupError` naming the option when a log file,
    syslog or the journal cannot be used, or a configuration file is bad.
    """
    numeric = numeric_level(level, debug=debug)
    root = logging.getLogger()
    if config_append:
        _apply_config_file(config_append)
        return root.getEffectiveLevel()
    handlers: list[logging.Handler] = []
    path = log_file_path(log_file, log_dir, prog)
    if path:
        handlers.append(_file_handler(path, watch=watch_log_file))
    if not path or also_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    text_format = FORMAT.replace("%(levelname)s", f"{label}%(levelname)s")
    formatter: logging.Formatter = (
        JsonFormatter(datefmt=date_format)
        if use_json
        else logging.Formatter(text_format, datefmt=date_format)
    )
    for handler in handlers:
        handler.setFormatter(formatter)
    if use_syslog:
        handlers.append(
            _syslog_handler(syslog_facility, prog, use_json, syslog_address, label)
        )
    if use_journal:
        handlers.append(JournalHandler(prog, journal_socket))
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(numeric)
    # The access log (deepaas.api.access_log) follows the level; deepaas-run
    # --access-log false turns it off.
    logging.getLogger("aiohttp.access").setLevel(logging.NOTSET)
    return numeric


def log_file_path(log_file: str | None, log_dir: str | None, prog: str) -> str | None:
    """Where the log goes, as oslo.log decides it; None for standard error."""
    if log_file and log_dir:
        return os.path.join(log_dir, log_file)
    if log_file:
        return log_file
    if log_dir:
        return os.path.join(log_dir, f"{os.path.basename(prog)}.log")
    return None


def _private_opener(path: str, flags: int) -> int:
    """Open a log file as 0600 when it is created: logs may hold user data."""
    return os.open(path, flags, 0o600)


class _PrivateFileHandler(logging.FileHandler):
    def _open(self) -> Any:
        return open(  # noqa: SIM115 (the handler closes it)
            self.baseFilename,
            self.mode,
            encoding=self.encoding,
            errors=self.errors,
            opener=_private_opener,
        )


class _PrivateWatchedFileHandler(logging.handlers.WatchedFileHandler):
    """Reopened after rotation as the first one: created 0600."""

    _open = _PrivateFileHandler._open


def _file_handler(path: str, *, watch: bool) -> logging.Handler:
    try:
        if watch:
            return _PrivateWatchedFileHandler(path)
        return _PrivateFileHandler(path)
    except OSError as exc:
        raise LoggingSetupError(
            f"cannot write the log file {path!r} (--log-file, --log-dir): "
            f"{exc.strerror or exc}"
        ) from None


def _apply_config_file(path: str) -> None:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise LoggingSetupError(
            f"--log-config-append {path!r}: {exc.strerror or exc}"
        ) from None
    try:
        if text.lstrip().startswith("{"):
            logging.config.dictConfig(json.loads(text))
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except Exception as exc:  # the logging module raises many kinds
        raise LoggingSetupError(
            f"--log-config-append {path!r} is not a usable logging configuration: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def syslog_facility_code(name: str) -> int:
    """``LOG_LOCAL0``, ``local0`` or ``LOCAL0`` -> the syslog facility number."""
    key = name.strip().lower()
    if key.startswith("log_"):
        key = key[4:]
    names = logging.handlers.SysLogHandler.facility_names
    if key not in names:
        known = ", ".join(f"LOG_{n.upper()}" for n in sorted(names))
        raise LoggingSetupError(
            f"--syslog-log-facility: unknown facility {name!r}; use one of {known}"
        )
    return names[key]


def _syslog_handler(
    facility: str, prog: str, use_json: bool, address: str, label: str = ""
) -> logging.Handler:
    code = syslog_facility_code(facility)
    # SysLogHandler itself stays silent when nothing listens; say so at once.
    if not os.path.exists(address):
        raise LoggingSetupError(
            f"--use-syslog: no syslog at {address} (is a syslog daemon running?)"
        )
    try:
        handler = logging.handlers.SysLogHandler(address=address, facility=code)
    except OSError as exc:
        raise LoggingSetupError(
            f"--use-syslog: no syslog at {address} ({exc.strerror or exc})"
        ) from None
    handler.ident = f"{os.path.basename(prog)}[{os.getpid()}]: "
    handler.setFormatter(
        JsonFormatter()
        if use_json
        else logging.Formatter(f"{label}%(levelname)s %(name)s: %(message)s")
    )
    return handler


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the keys oslo.log's JSON lines have."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        data: dict[str, Any] = {
            "message": message,
            "asctime": self.formatTime(record, self.datefmt),
            "name": record.name,
            "msg": str(record.msg),
            "levelname": record.levelname,
            "levelno": record.levelno,
            "pathname": record.pathname,
            "filename": record.filename,
            "module": record.module,
            "lineno": record.lineno,
            "funcname": record.funcName,
            "created": record.created,
            "msecs": record.msecs,
            "relative_created": record.relativeCreated,
            "thread": record.thread,
            "thread_name": record.threadName,
            "process_name": record.processName,
            "process": record.process,
            "hostname": socket.gethostname(),
            "traceback": None,
        }
        if record.exc_info:
            data["traceback"] = traceback.format_exception(*record.exc_info)
            data["error_summary"] = traceback.format_exception_only(
                *record.exc_info[:2]
            )[-1].strip()
        return json.dumps(data, default=str)


#: logging levels -> syslog priorities (as the journal stores them).
_PRIORITIES = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)


class JournalHandler(logging.Handler):
    """Send records to the systemd journal over its native protocol.

    Each record becomes one datagram of ``KEY=value`` fields: ``MESSAGE``,
    ``PRIORITY``, ``SYSLOG_IDENTIFIER``, ``LOGGER_NAME``, ``CODE_FILE``,
    ``CODE_LINE``, ``CODE_FUNC``, ``THREAD_NAME`` (and ``EXCEPTION_INFO``).
    """

    def __init__(self, identifier: str, path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.identifier = os.path.basename(identifier)
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._socket.connect(path)
        except OSError as exc:
            self._socket.close()
            raise LoggingSetupError(
                f"--use-journal: no systemd journal at {path} ({exc.strerror or exc})"
            ) from None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {
                "MESSAGE": record.getMessage(),
                "PRIORITY": str(_priority(record.levelno)),
                "SYSLOG_IDENTIFIER": self.identifier,
                "LOGGER_NAME": record.name,
                "LOGGER_LEVEL": record.levelname,
                "CODE_FILE": record.pathname,
                "CODE_LINE": str(record.lineno),
                "CODE_FUNC": record.funcName,
                "THREAD_NAME": record.threadName or "",
            }
            if record.exc_info:
                fields["EXCEPTION_INFO"] = "".join(
                    traceback.format_exception(*record.exc_info)
                )
            self._socket.send(encode_journal_fields(fields))
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self._socket.close()
        super().close()


def _priority(levelno: int) -> int:
    for threshold, priority in _PRIORITIES:
        if levelno >= threshold:
            return priority
    return 7


def encode_journal_fields(fields: dict[str, str]) -> bytes:
    """The journal's native datagram: ``KEY=value`` lines, binary-safe.

    A value with a newline is written as the key, a newline, its length as
    a little-endian 64-bit integer, the value and a newline.
    """
    parts: list[bytes] = []
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            parts.append(
                key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
            )
        else:
            parts.append(key.encode() + b"=" + data + b"\n")
    return b"".join(parts)


@dataclasses.dataclass(frozen=True)
class LoggingSettings:
    """The logging options (``--log-level``, ``--debug``, ``--log-file``...).

    The field names are :func:`setup_logging`'s keywords.  Console scripts
    build one in :mod:`deepaas.cmd`; nothing else reads logging options.
    """

    level: str = "INFO"
    debug: bool = False
    log_file: str | None = None
    log_dir: str | None = None
    watch_log_file: bool = False
    date_format: str = DATE_FORMAT
    use_json: bool = False
    use_syslog: bool = False
    syslog_facility: str = "LOG_USER"
    use_journal: bool = False
    config_append: str | None = None

    @property
    def numeric_level(self) -> int:
        """The level as a number: DEBUG with ``--debug``."""
        return numeric_level(self.level, debug=self.debug)

    @property
    def to_file(self) -> bool:
        """Whether the log leaves standard error (a file, or a config file)."""
        return bool(self.log_file or self.log_dir or self.config_append)


def setup_logging_from_settings(
    settings: LoggingSettings,
    prog: str,
    *,
    syslog_address: str = SYSLOG_SOCKET,
    journal_socket: str = JOURNAL_SOCKET,
) -> int:
    """:func:`setup_logging` as ``settings`` ask; the numeric level chosen."""
    return setup_logging(
        **dataclasses.asdict(settings),
        prog=prog,
        syslog_address=syslog_address,
        journal_socket=journal_socket,
    )


#: Environment variable that hands deepaas-run's logging options to the
#: processes it spawns (prediction workers, model probes).
WORKER_LOGGING_ENV = "DEEPAAS_WORKER_LOGGING"


def worker_logging_settings(
    settings: LoggingSettings, prog: str, *, also_stderr: bool
) -> str:
    """deepaas-run's logging options, as the value of WORKER_LOGGING_ENV.

    The level is not among them: each worker is told its own.
    """
    fields = dataclasses.asdict(settings)
    del fields["level"], fields["debug"]
    return json.dumps({**fields, "prog": prog, "also_stderr": also_stderr})


def setup_worker_logging(level: int) -> None:
    """Log from a spawned worker where the server logs.

    A model's own log records (``logging.getLogger(__name__)`` in predict)
    then reach the server's log file, JSON lines, syslog or journal, as they
    did in DEEPaaS 2.x where models ran inside the server.  Without the
    server's settings (deepaas-predict's workers), or if they cannot be
    applied, the worker logs to standard error.
    """
    label = f"worker[{os.getpid()}] "
    settings = os.environ.get(WORKER_LOGGING_ENV)
    problem = None
    if settings:
        try:
            setup_logging(
                level=logging.getLevelName(level), label=label, **json.loads(settings)
            )
            return
        except (LoggingSetupError, ValueError, TypeError) as exc:
            problem = str(exc)
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s {label}%(levelname)s %(name)s: %(message)s",
    )
    if problem:
        logging.getLogger(__name__).warning(
            "this worker logs to standard error: the server's logging options "
            "cannot be applied here (%s)",
            problem,
        )
