"""Every contract option as a flag and in a config file; the sample is current."""

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from oslo_config import cfg

from deepaas.config import build_config, list_opts

ROOT = Path(__file__).resolve().parent.parent

#: option (dest) -> (command-line value, expected value), one per contract option.
CONTRACT = {
    "listen_ip": ("0.0.0.0", "0.0.0.0"),
    "listen_port": ("8080", 8080),
    "model_name": ("my-model", ["my-model"]),
    "workers": ("3", 3),
    "warm": ("false", False),
    "train_endpoint": ("false", False),
    "predict_endpoint": ("false", False),
    "debug_endpoint": ("true", True),
    "doc_endpoint": ("false", False),
    "client_max_size": ("1048576", 1048576),
    "base_path": ("/deepaas", "/deepaas"),
    "debug": ("true", True),
    "log_level": ("WARNING", "WARNING"),
    "log_file": ("/tmp/deepaas.log", "/tmp/deepaas.log"),
}

DEFAULTS = {
    "listen_ip": "127.0.0.1",
    "listen_port": 5000,
    "model_name": [],
    "workers": 1,
    "warm": True,
    "train_endpoint": True,
    "predict_endpoint": True,
    "debug_endpoint": False,
    "doc_endpoint": True,
    "client_max_size": 16 * 1024 * 1024,
    "base_path": "",
    "debug": False,
    "log_level": "INFO",
    "log_file": None,
}


def flag(dest):
    return "--" + dest.replace("_", "-")


def test_defaults():
    conf = build_config([], environ={})
    for dest, expected in DEFAULTS.items():
        assert conf[dest] == expected, dest


@pytest.mark.parametrize("dest", sorted(CONTRACT))
def test_every_option_as_a_flag(dest):
    given, expected = CONTRACT[dest]
    conf = build_config([flag(dest), given], environ={})
    assert conf[dest] == expected


@pytest.mark.parametrize("dest", sorted(CONTRACT))
def test_every_option_in_a_config_file(tmp_path, dest):
    given, expected = CONTRACT[dest]
    path = tmp_path / "deepaas.conf"
    path.write_text(f"[DEFAULT]\n{dest} = {given}\n")
    conf = build_config(["--config-file", str(path)], environ={})
    assert conf[dest] == expected


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "deepaas.conf"
    path.write_text("[DEFAULT]\nworkers = 4\nlisten_port = 7000\n")
    conf = build_config(["--config-file", str(path), "--workers", "2"], environ={})
    assert (conf.workers, conf.listen_port) == (2, 7000)


@pytest.mark.parametrize("argv, expected", [
    (["--predict-endpoint", "false"], False),
    (["--predict-endpoint", "False"], False),
    (["--predict-endpoint=false"], False),
    (["--predict-endpoint", "no"], False),
    (["--predict-endpoint", "off"], False),
    (["--predict-endpoint", "0"], False),
    (["--nopredict-endpoint"], False),
    (["--predict-endpoint", "true"], True),
    (["--predict-endpoint=yes"], True),
    (["--predict-endpoint"], True),
    (["--nopredict-endpoint", "--predict-endpoint", "on"], True),
])
def test_boolean_spellings(argv, expected):
    assert build_config(argv, environ={}).predict_endpoint is expected


def test_a_boolean_flag_before_another_flag_is_true():
    conf = build_config(["--debug-endpoint", "--workers", "0"], environ={})
    assert conf.debug_endpoint is True
    assert conf.workers == 0


def test_several_model_names():
    conf = build_config(["--model-name", "a", "--model-name", "b"], environ={})
    assert conf.model_name == ["a", "b"]


def test_model_names_from_the_environment():
    conf = build_config([], environ={"DEEPAAS_V2_MODEL": "a, b"})
    assert conf.model_name == ["a", "b"]
    conf = build_config(["--model-name", "c"], environ={"DEEPAAS_V2_MODEL": "a"})
    assert conf.model_name == ["c"]


def test_command_line_model_names_replace_those_of_config_files(tmp_path):
    path = tmp_path / "deepaas.conf"
    path.write_text("[DEFAULT]\nmodel_name = a\nmodel_name = b\n")
    conf = build_config(["--config-file", str(path), "--model-name", "c",
                         "--model-name=d"], environ={"DEEPAAS_V2_MODEL": "e"})
    assert conf.model_name == ["c", "d"]


def test_the_short_options_of_deepaas_2x():
    conf = build_config(["-p", "3", "-d"], environ={})
    assert (conf.workers, conf.debug) == (3, True)


def test_model_names_in_a_config_file(tmp_path):
    path = tmp_path / "deepaas.conf"
    path.write_text("[DEFAULT]\nmodel_name = a\nmodel_name = b\n")
    conf = build_config(["--config-file", str(path)], environ={})
    assert conf.model_name == ["a", "b"]


@pytest.mark.slow
def test_log_level_ignores_case():
    """``--log-level debug`` is accepted and the log is then at DEBUG level."""
    program = (
        "import logging, sys\n"
        "from deepaas.config import build_config\n"
        "from deepaas.log import setup_logging\n"
        "conf = build_config(sys.argv[1:], environ={})\n"
        "print(setup_logging(level=conf.log_level))\n"
        "logging.getLogger(\"deepaas.check\").debug(\"seen at debug level\")\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", program, "--log-level", "debug"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(logging.DEBUG)
    assert "DEBUG deepaas.check: seen at debug level" in proc.stderr


@pytest.mark.parametrize("argv, words", [
    (["--workers", "many"], ["--workers", "many"]),
    (["--workers", "-1"], ["--workers", "-1"]),
    (["--listen-port", "70000"], ["listen_port", "70000"]),
    (["--client-max-size", "-5"], ["client_max_size", "-5"]),
    (["--log-level", "LOUD"], ["log_level", "LOUD"]),
    (["--no-such-option"], ["--no-such-option"]),
])
def test_bad_values_are_clear_errors(capsys, argv, words):
    with pytest.raises(SystemExit) as info:
        build_config(argv, environ={})
    assert info.value.code != 0
    err = capsys.readouterr().err
    for word in words:
        assert word in err


def test_bad_boolean_is_a_clear_error():
    with pytest.raises(cfg.Error, match=r"--predict-endpoint takes true or false "
                       r"\(got 'maybe'\)"):
        build_config(["--predict-endpoint=maybe"], environ={})


def test_bad_value_in_a_config_file(tmp_path, capsys):
    path = tmp_path / "deepaas.conf"
    path.write_text("[DEFAULT]\nworkers = many\n")
    with pytest.raises(SystemExit) as info:
        build_config(["--config-file", str(path)], environ={})
    assert info.value.code != 0
    assert "many" in capsys.readouterr().err


def test_every_option_is_in_the_generator_listing():
    [(group, opts)] = list_opts()
    assert group == "DEFAULT"
    assert set(CONTRACT) <= {opt.dest for opt in opts}


@pytest.mark.slow
def test_sample_config_is_up_to_date(tmp_path):
    """etc/deepaas.conf.sample is what oslo-config-generator makes now.

    Regenerate it with ``tox -e genconfig`` (or the command below).
    """
    generator = Path(sys.executable).with_name("oslo-config-generator")
    fresh = tmp_path / "deepaas.conf.sample"
    subprocess.run(
        [str(generator), "--config-file", "etc/deepaas-config-generator.conf",
         "--output-file", str(fresh)],
        cwd=ROOT, check=True, env={**os.environ, "COLUMNS": "80"},
    )
    assert (ROOT / "etc" / "deepaas.conf.sample").read_text() == fresh.read_text(), (
        "etc/deepaas.conf.sample is out of date: run "
        "oslo-config-generator --config-file etc/deepaas-config-generator.conf"
    )


def test_sample_config_parses(tmp_path):
    """Every value the sample shows, uncommented, parses to the real default;
    values a user changes in a copy of it are read."""
    text = (ROOT / "etc" / "deepaas.conf.sample").read_text()
    shown = {}

    def uncomment(match: re.Match[str]) -> str:
        name, value = match.groups()
        if value == "<None>" or "$" in value:  # placeholders, not values
            return match.group(0)
        shown[name] = value
        return f"{name} = {value}"

    path = tmp_path / "deepaas.conf"
    path.write_text(re.sub(r"^#(\w+) = (.+)$", uncomment, text, flags=re.M))
    assert len(shown) > 20
    conf = build_config(["--config-file", str(path)], environ={})
    defaults = build_config([], environ={})
    assert {n: getattr(conf, n) for n in shown} == {
        n: getattr(defaults, n) for n in shown
    }

    changes = {"listen_port": ("5000", "5123", 5123), "workers": ("1", "3", 3),
               "warm": ("true", "false", False), "log_level": ("INFO", "warning",
               "warning"), "max_queue": ("0", "7", 7),
               "shutdown_timeout": ("30.0", "4.5", 4.5)}
    edited = path.read_text()
    for name, (old, new, _) in changes.items():
        line = f"\n{name} = {old}\n"
        assert line in edited, name
        edited = edited.replace(line, f"\n{name} = {new}\n")
    path.write_text(edited)
    conf = build_config(["--config-file", str(path)], environ={})
    assert {n: getattr(conf, n) for n in changes} == {
        n: value for n, (_, _, value) in changes.items()
    }


def test_security_options_copy_the_api_s_kinds_and_algorithms() -> None:
    """The options module copies them (it must not import aiohttp): keep in step."""
    from deepaas import _security_options
    from deepaas.api.security import auth, oidc

    assert tuple(_security_options.KINDS) == tuple(auth.KINDS)
    assert tuple(_security_options._DEFAULT_ALGORITHMS) == tuple(
        oidc.DEFAULT_ALGORITHMS
    )
