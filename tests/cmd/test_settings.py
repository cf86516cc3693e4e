"""The settings each console script builds once, and what the layers see.

A user writes a config file and a command line; deepaas/cmd turns them into
one frozen dataclass per layer, which refuses a bad value with the option's
name.  The engine, the API and the trainings read only those dataclasses.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from deepaas.api.security.settings import SecuritySettings
from deepaas.api.settings import ApiSettings, ServerSettings
from deepaas.cmd._settings import (
    api_settings,
    cli_settings,
    predict_job_settings,
    predict_settings,
    run_settings,
    security_settings,
    server_settings,
    training_settings,
)
from deepaas.cmd.run import main as run_main
from deepaas.config import build_config
from deepaas.engine.settings import EngineSettings
from deepaas.log import LoggingSettings
from deepaas.training.settings import (
    PredictJobSettings,
    SlurmSettings,
    TrainingSettings,
)
from tests.conftest import subprocess_env

PACKAGE = Path(__file__).resolve().parents[2] / "deepaas"


def config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "deepaas.conf"
    path.write_text("[DEFAULT]\n" + text)
    return str(path)


def test_deepaas_run_builds_each_layer_from_the_file_and_the_command_line(
    tmp_path: Path,
) -> None:
    conf = build_config(
        [
            "--config-file",
            config_file(
                tmp_path,
                "workers = 3\npredict_timeout = 5\nlog_level = WARNING\n"
                f"state_dir = {tmp_path / 'state'}\nslurm_partition = gpu\n"
                "base_path = deepaas/\nallowed_hosts = api.example.org\n",
            ),
            "--workers",
            "2",
            "--gpus",
            "none",
            "--no-warm",
            "--keep-trainings",
            "4",
        ],
        environ={},
    )
    run = run_settings(conf)
    assert run.engine == EngineSettings(
        workers=2, gpus="none", warm=False, call_timeout=5.0
    )
    assert run.logging == LoggingSettings(level="WARNING")
    assert (run.listen_ip, run.listen_port, run.trains_locally) == (
        "127.0.0.1",
        5000,
        True,
    )
    slurm = SlurmSettings(partition="gpu")
    assert training_settings(conf) == TrainingSettings(
        state_dir=tmp_path / "state",
        keep=4,
        log_level=logging.WARNING,
        slurm=slurm,
    )
    assert predict_job_settings(conf) == PredictJobSettings(
        state_dir=tmp_path / "state", keep=4, log_level=logging.WARNING, slurm=slurm
    )
    assert api_settings(conf) == ApiSettings(base_path="/deepaas")
    assert server_settings(conf) == ServerSettings()
    assert security_settings(conf) == SecuritySettings(
        allowed_hosts=("api.example.org",)
    )


def test_switched_off_endpoints_have_no_service_settings() -> None:
    conf = build_config(
        ["--train-endpoint", "false", "--predict-endpoint", "false"], environ={}
    )
    assert training_settings(conf) is None
    assert predict_job_settings(conf) is None
    # No training runs here, so no GPU is kept for one.
    assert run_settings(conf).trains_locally is False
    slurm = build_config(["--train-backend", "slurm"], environ={})
    assert run_settings(slurm).trains_locally is False


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: EngineSettings(workers=-1), "--workers must be >= 0 (got -1)"),
        (
            lambda: EngineSettings(workers_per_gpu=0),
            "--workers-per-gpu must be >= 1 (got 0)",
        ),
        (
            lambda: EngineSettings(call_timeout=-2.0),
            "--predict-timeout must be >= 0 (got -2.0)",
        ),
        (
            lambda: TrainingSettings(max_log_bytes=100),
            "--train-log-max-bytes must be 0 (no cap) or >= 16384 (got 100)",
        ),
        (
            lambda: TrainingSettings(backend="cloud"),  # type: ignore[arg-type]
            "--train-backend must be 'local' or 'slurm' (got 'cloud')",
        ),
        (
            lambda: PredictJobSettings(max_stored=-1),
            "--max-stored-predict-jobs must be >= 0 (got -1)",
        ),
        (
            lambda: ApiSettings(client_max_size=-1),
            "--client-max-size must be >= 0 (got -1)",
        ),
        (
            lambda: ServerSettings(shutdown_timeout=-1),
            "--shutdown-timeout must be >= 0 (got -1)",
        ),
        (
            lambda: SecuritySettings(oidc_audience="api"),
            "the --oidc-* options need --oidc-issuer",
        ),
    ],
)
def test_a_bad_value_is_refused_where_the_settings_are_made(make, message) -> None:
    with pytest.raises(ValueError) as refused:
        make()
    assert str(refused.value) == message


def test_settings_cannot_change_once_made() -> None:
    settings = EngineSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.workers = 4  # type: ignore[misc]


def test_deepaas_run_refuses_a_bad_option_once_in_one_line(capsys) -> None:
    # oslo.config checks the range as it parses, before any settings exist.
    assert run_main(["--workers", "-1", "--listen-port", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["argument --workers: Invalid Integer(min=0) value: -1"]


def test_deepaas_run_refuses_oidc_options_without_an_issuer(
    installed_models, capsys
) -> None:
    code = run_main(
        [
            "--oidc-audience",
            "api",
            "--model-name",
            "echo",
            "--workers",
            "0",
            "--listen-port",
            "0",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "deepaas-run: error: the --oidc-* options need --oidc-issuer"
    assert sum("--oidc-issuer" in line for line in err) == 1


def test_deepaas_predict_reads_its_options_over_the_config_file(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("DEEPAAS_V2_MODEL", "from-env")
    path = config_file(tmp_path, "workers_per_gpu = 2\ngpus = 0\nwarm = false\n")
    settings = predict_settings(
        config_file=path,
        model_name=None,
        workers=3,
        gpus=None,
        warm=None,
        log_level="DEBUG",
        prog="deepaas-predict",
    )
    assert settings.model_names == ("from-env",)
    assert settings.log_level == "DEBUG"
    assert settings.engine == EngineSettings(
        workers=3, workers_per_gpu=2, gpus="0", warm=False
    )
    given = predict_settings(
        config_file=None,
        model_name="echo",
        workers=1,
        gpus="none",
        warm=True,
        log_level=None,
        prog="deepaas-predict",
    )
    assert given.model_names == ("echo",)
    assert given.log_level == "INFO"
    assert given.engine == EngineSettings(workers=1, gpus="none")


@pytest.mark.slow  # starts a process
def test_deepaas_predict_refuses_negative_workers_once(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepaas.cmd.predict",
            "--workers",
            "-1",
            "-o",
            str(tmp_path / "out"),
            str(tmp_path),
        ],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("--workers must be >= 0 (got -1)") == 1
    assert not (tmp_path / "out").exists()


def test_deepaas_cli_logs_warnings_unless_a_level_is_asked_for(
    tmp_path: Path,
) -> None:
    assert cli_settings({}, prog="deepaas-cli").logging.level == "WARNING"
    path = config_file(tmp_path, "log_level = ERROR\nmodel_name = echo\n")
    from_file = cli_settings({"config_file": [path]}, prog="deepaas-cli")
    assert from_file.logging.level == "ERROR"
    assert from_file.model_names == ("echo",)
    given = cli_settings(
        {"config_file": [path], "log_level": "DEBUG", "warm": False,
         "model_name": ["other"]},
        prog="deepaas-cli",
    )  # fmt: skip
    assert (given.logging.level, given.warm, given.model_names) == (
        "DEBUG",
        False,
        ("other",),
    )


LAYERS = ("engine", "api", "training", "jobs", "model", "batch")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_layers_never_import_the_config_object() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for layer in LAYERS
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for name in _imported_modules(path)
        if name.split(".")[0] == "oslo_config" or name == "deepaas.config"
    ]
    assert offenders == []


@pytest.mark.slow  # starts a process
def test_importing_the_layers_loads_no_oslo_config() -> None:
    code = (
        "import sys\n"
        + "".join(f"import deepaas.{layer}\n" for layer in LAYERS)
        + "print(sorted(m for m in sys.modules if m.startswith('oslo')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True,
        text=True, timeout=60, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "[]"


@pytest.mark.slow  # starts a process
def test_deepaas_run_builds_its_first_settings_without_the_http_stack() -> None:
    # Start-up: the API and the trainings are imported once workers start.
    code = (
        "import sys\n"
        "from deepaas.cmd._settings import run_settings\n"
        "from deepaas.config import build_config\n"
        "import deepaas.cmd.run\n"
        "run_settings(build_config([]))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp'"
        " or m.startswith(('deepaas.api', 'deepaas.training', 'deepaas.jobs'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True,
        text=True, timeout=60, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "[]"
