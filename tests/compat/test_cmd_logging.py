"""DEEPaaS 2.x's logging options (oslo.log's) work in deepaas-run.

On the command line and in config files: a log file really gets written,
JSON really is JSON, syslog and the journal really receive datagrams
(issue 9 item 11).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepaas.cmd._settings import logging_settings
from deepaas.config import build_config
from deepaas.log import setup_logging, setup_logging_from_settings
from tests.cmd.test_run import run
from tests.conftest import FAKE_MODELS, subprocess_env, write_distribution
from tests.servers import RunningServer


@pytest.fixture(scope="module")
def echo_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("echo-site")
    return write_distribution(site, {"echo": FAKE_MODELS["echo"]})


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger back as it was after a test configures it."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            if handler not in saved[1]:
                handler.close()
        for handler in saved[1]:
            root.addHandler(handler)
        root.setLevel(saved[0])


def serve_and_stop(site: Path, tmp_path: Path, *args: str, between=None) -> None:
    server = RunningServer("--workers", "0", *args, env=subprocess_env(site),
                           log=tmp_path / "stderr.log")
    try:
        server.wait_serving()
        if between is not None:
            between()
        assert server.terminate() == 0
    finally:
        server.close()


@pytest.mark.slow
def test_json_lines_in_a_log_file_from_a_config_file_reopened_when_moved(
    echo_site: Path, tmp_path: Path
):
    log_file = tmp_path / "deepaas.log"
    config = tmp_path / "deepaas.conf"
    config.write_text(
        "[DEFAULT]\n"
        f"log_file = {log_file}\n"
        "use_json = true\n"
        "log_date_format = %d/%m/%Y %H:%M\n"
    )
    moved = tmp_path / "deepaas.log.1"
    serve_and_stop(echo_site, tmp_path, "--config-file", str(config),
                   "--watch-log-file", between=lambda: log_file.rename(moved))
    before = [json.loads(line) for line in moved.read_text().splitlines()]
    after = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any("loading and warming echo" in r["message"] for r in before)
    assert any(r["message"] == "stopped" for r in after)
    for record in before + after:
        assert record["name"].startswith("deepaas")
        assert record["levelname"] in ("INFO", "WARNING")
        time.strptime(record["asctime"], "%d/%m/%Y %H:%M")
    stderr = (tmp_path / "stderr.log").read_text()
    assert "loading and warming" not in stderr  # the file, not stderr


@pytest.mark.slow
def test_what_a_model_logs_in_a_worker_reaches_the_log_file(tmp_path: Path):
    site = write_distribution(tmp_path, {"chatty": FAKE_MODELS["chatty"]})
    log_file = tmp_path / "deepaas.log"
    server = RunningServer("--workers", "1", "--log-file", str(log_file), "--use-json",
                           env=subprocess_env(site), log=tmp_path / "stderr.log")
    try:
        server.wait_serving()
        assert server.post("/v2/models/chatty/predict/", {})[0] == 200
        assert server.terminate() == 0
    finally:
        server.close()
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    [logged] = [r for r in records if r["message"] == "chatty: logged a warning"]
    assert (logged["name"], logged["levelname"]) == ("chatty", "WARNING")
    assert logged["process"] != server.process.pid  # from the worker
    assert "chatty: logged a warning" not in (tmp_path / "stderr.log").read_text()


@pytest.mark.slow
def test_log_dir_holds_the_program_s_log(echo_site: Path, tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    serve_and_stop(echo_site, tmp_path, "--log-dir", str(logs), "--debug")
    text = (logs / "deepaas-run.log").read_text()
    assert " INFO deepaas" in text and "stopped" in text
    assert " DEBUG " in text  # --debug still applies


@pytest.mark.slow
def test_log_config_append_configures_the_log_alone(echo_site: Path, tmp_path: Path):
    out = tmp_path / "custom.log"
    config = tmp_path / "logging.ini"
    config.write_text(
        "[loggers]\nkeys = root\n\n"
        "[handlers]\nkeys = file\n\n"
        "[formatters]\nkeys = plain\n\n"
        "[logger_root]\nlevel = INFO\nhandlers = file\n\n"
        "[handler_file]\nclass = FileHandler\nformatter = plain\n"
        f"args = ({str(out)!r},)\n\n"
        "[formatter_plain]\nformat = CUSTOM %(levelname)s %(message)s\n"
    )
    serve_and_stop(echo_site, tmp_path, "--log-config-append", str(config),
                   "--use-json")
    lines = out.read_text().splitlines()
    assert "CUSTOM INFO stopped" in lines
    assert all(line.startswith("CUSTOM ") for line in lines)


@pytest.mark.slow
def test_a_log_file_that_cannot_be_written_is_one_line_exit_2(tmp_path: Path):
    result = run("--log-file", str(tmp_path / "no" / "such" / "dir.log"),
                 env=subprocess_env())
    assert result.returncode == 2
    assert result.stderr.startswith("deepaas-run: error: cannot write the log file")
    assert len(result.stderr.splitlines()) == 1


def test_every_2x_logging_option_on_the_command_line_and_in_a_config_file(
    tmp_path: Path
):
    argv = ["--log-dir", "/var/log", "--log-file", "x.log",
            "--log-config-append", "/etc/log.ini", "--log-date-format", "%H",
            "--use-json", "--use-syslog", "--use-journal", "--watch-log-file",
            "--syslog-log-facility", "LOG_LOCAL3", "--debug"]
    expected = {"log_dir": "/var/log", "log_file": "x.log",
                "log_config_append": "/etc/log.ini", "log_date_format": "%H",
                "use_json": True, "use_syslog": True, "use_journal": True,
                "watch_log_file": True, "syslog_log_facility": "LOG_LOCAL3",
                "debug": True}
    conf = build_config(argv, environ={})
    assert {name: conf[name] for name in expected} == expected
    config = tmp_path / "deepaas.conf"
    config.write_text("[DEFAULT]\n" + "".join(
        f"{name} = {value}\n"
        for name, value in expected.items()))
    conf = build_config(["--config-file", str(config)], environ={})
    assert {name: conf[name] for name in expected} == expected
    # oslo.log's older names, still found in 2.x config files
    config.write_text("[DEFAULT]\nlogfile = old.log\nlogdir = /old\n")
    conf = build_config(["--config-file", str(config)], environ={})
    assert (conf.log_file, conf.log_dir) == ("old.log", "/old")


def _datagram_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    return sock


def test_syslog_gets_each_record_with_its_facility(tmp_path: Path, root_logging):
    address = tmp_path / "log.sock"
    with _datagram_socket(address) as syslog:
        conf = build_config(["--use-syslog", "--syslog-log-facility", "LOG_LOCAL0"],
                            environ={})
        setup_logging(level=conf.log_level, use_syslog=conf.use_syslog,
                      syslog_facility=conf.syslog_log_facility, prog="deepaas-run",
                      syslog_address=str(address))
        logging.getLogger("deepaas.test").info("to syslog")
        datagram = syslog.recv(65536).decode()
    # <priority> = facility local0 (16) * 8 + severity info (6)
    ident = f"deepaas-run[{os.getpid()}]: "
    assert datagram == f"<134>{ident}INFO deepaas.test: to syslog\x00"


def test_use_syslog_without_a_syslog_is_a_clear_error(tmp_path: Path, root_logging):
    with pytest.raises(ValueError, match="--use-syslog: no syslog at"):
        setup_logging(use_syslog=True, syslog_address=str(tmp_path / "none"))
    with pytest.raises(ValueError, match="unknown facility 'LOG_NOPE'"):
        setup_logging(use_syslog=True, syslog_facility="LOG_NOPE")


def _journal_fields(datagram: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        line, _, rest = rest.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
        else:  # KEY\n<length><value>\n
            (size,) = struct.unpack("<Q", rest[:8])
            fields[line.decode()] = rest[8 : 8 + size].decode()
            rest = rest[8 + size + 1 :]
    return fields


def test_the_journal_gets_structured_records(tmp_path: Path, root_logging):
    path = tmp_path / "journal.sock"
    with _datagram_socket(path) as journal:
        conf = build_config(["--use-journal", "--use-json"], environ={})
        conf.set_override("log_file", str(tmp_path / "file.log"))
        setup_logging_from_settings(
            logging_settings(conf), "deepaas-run", journal_socket=str(path)
        )
        try:
            raise RuntimeError("boom\nsecond line")
        except RuntimeError:
            logging.getLogger("deepaas.test").exception("it failed")
        fields = _journal_fields(journal.recv(65536))
    assert fields["MESSAGE"] == "it failed"
    assert fields["PRIORITY"] == "3"
    assert fields["SYSLOG_IDENTIFIER"] == "deepaas-run"
    assert fields["LOGGER_NAME"] == "deepaas.test"
    assert "RuntimeError: boom\nsecond line" in fields["EXCEPTION_INFO"]
    line = json.loads((tmp_path / "file.log").read_text().splitlines()[-1])
    assert line["message"] == "it failed" and "RuntimeError" in line["error_summary"]
