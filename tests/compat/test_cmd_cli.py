"""deepaas-cli and deepaas-predict take DEEPaaS 2.x's command lines.

Real console-script processes, with models registered as installed entry
points (issue 9 items 6 and 7, issue 10 items 5 and 9).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAKE_MODELS, ROOT, subprocess_env, write_distribution

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
CLI = str(BIN / "deepaas-cli")
PREDICT = str(BIN / "deepaas-predict")

#: A model written as published 2.x models are: a file argument named files.
FILES_MODEL = '''
import os

from marshmallow import fields


def get_metadata():
    return {"name": "files-model", "description": "reads {files}"}


def get_predict_args():
    return {"files": fields.Field(required=True, metadata={"type": "file",
                                  "location": "form", "description": "a file"})}


def predict(files):
    return {"name": files.original_filename, "size": os.path.getsize(files.filename)}
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two models installed: the 2.x-style files model and old-style."""
    site = tmp_path_factory.mktemp("cli-site")
    (site / "files_model.py").write_text(FILES_MODEL)
    return write_distribution(
        site, {"files-model": "files_model", "old-style": FAKE_MODELS["old-style"]}
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "x.jpg"
    path.write_bytes(b"\xff\xd8 fake jpeg")
    return path


def cli(site: Path, *args: object, model: str | None = "files-model",
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(site, COLUMNS="200",
                         **({"DEEPAAS_V2_MODEL": model} if model else {}))
    return subprocess.run([CLI, *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def test_a_2x_command_line_with_its_options_before_the_method(site, image, tmp_path):
    saved = tmp_path / "out" / "new" / "result.json"  # folders made, as in 2.x
    result = cli(site, "--deepaas_method_output", saved,
                 "--nodeepaas_with_multiprocessing", "predict", f"--files={image}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1  # one line of JSON
    answer = json.loads(result.stdout)
    assert answer == {"name": "x.jpg", "size": image.stat().st_size}
    assert json.loads(saved.read_text()) == answer


@pytest.mark.parametrize("flag", ["--deepaas_with_multiprocessing",
                                  "--nodeepaas_with_multiprocessing",
                                  "--no-deepaas_with_multiprocessing"])
def test_its_options_after_the_method_too(site, image, tmp_path, flag):
    saved = tmp_path / "result.json"
    result = cli(site, "predict", "--files", image, flag,
                 "--deepaas_method_output", saved)
    assert result.returncode == 0, result.stderr
    assert json.loads(saved.read_text())["name"] == "x.jpg"


def test_serverless_scripts_cut_the_answer_out_with_grep(site, image):
    """``deepaas-cli predict --files X 2>&1 | grep -Po '{.*}'`` is the answer."""
    script = (f"set -o pipefail; {CLI} --log-level INFO predict --files {image} 2>&1 "
              "| grep -Po '{.*}'")
    env = subprocess_env(site, DEEPAAS_V2_MODEL="files-model")
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert json.loads(line) == {"name": "x.jpg", "size": image.stat().st_size}


def test_no_method_means_get_metadata_as_in_2x(site):
    result = cli(site)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "files-model"
    assert "no method given: calling get_metadata" in result.stderr


def test_train_answers_the_2x_training_record(site, tmp_path):
    result = cli(site, "train", "--epochs", "2", model="old-style")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert set(record) == {"date", "args", "status", "uuid", "result"}
    assert record["status"] == "done" and record["args"] == {"epochs": 2}
    assert set(record["result"]) == {"finish_date", "duration", "output"}
    assert record["result"]["output"] == {"epochs": 2}


@pytest.mark.parametrize("argv", [["--help"], ["predict", "--help"]])
def test_help_works_with_several_models_installed(site, argv):
    result = cli(site, *argv, model=None)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert text.startswith("usage: deepaas-cli")
    assert "several models are installed (files-model, old-style)" in text


def test_several_models_and_no_name_is_one_clear_line_exit_1(site):
    result = cli(site, "predict", model=None)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        "deepaas-cli: error: several models are installed (files-model, "
        "old-style); choose one with --model-name NAME or the DEEPAAS_V2_MODEL "
        "environment variable\n"
    )


@pytest.mark.parametrize(("argv", "hint"), [
    (["predict"], " (see deepaas-cli predict --help)"),
    (["predict", "--files", "x", "--nope"], " (see deepaas-cli predict --help)"),
    (["--nope", "get_metadata"], " (see deepaas-cli --help)"),
    (["fly"], " (see deepaas-cli --help)"),
    (["predict", "--files", "missing.jpg"], ""),
    (["--model-name", "nope", "predict"], ""),
])
def test_errors_point_to_the_help_that_helps(site, image, argv, hint):
    args = [str(image) if a == "x" else a for a in argv]
    result = cli(site, *args)
    [line] = result.stderr.splitlines()
    assert line.startswith("deepaas-cli: error: ")
    assert line.endswith(hint) if hint else "(see " not in line


def test_several_models_in_deepaas_predict_is_one_line_exit_1(site, image, tmp_path):
    env = subprocess_env(site)
    result = subprocess.run([PREDICT, "-o", tmp_path / "out", image], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("deepaas-predict: error: several models are installed")


@pytest.mark.parametrize("spelling", ["--no-warm", "--nowarm"])
def test_deepaas_predict_takes_both_spellings_of_its_boolean(site, image, tmp_path,
                                                             spelling):
    env = subprocess_env(site, DEEPAAS_V2_MODEL="files-model")
    result = subprocess.run(
        [PREDICT, spelling, "--workers", "0", "-o", tmp_path / "out", image],
        env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    [record] = [json.loads(line) for line in
                (tmp_path / "out").glob("results*.jsonl").__next__().read_text()
                .splitlines()]
    assert record["status"] == "ok"


def test_a_boolean_argument_takes_the_no_spelling_too(tmp_path):
    site = write_distribution(tmp_path, {"new-style": FAKE_MODELS["new-style"]})
    on = cli(site, "predict", "--text", "hi", "--bad", model=None)
    off = cli(site, "predict", "--text", "hi", "--bad", "--no-bad", model=None)
    assert (on.returncode, off.returncode) == (0, 0), on.stderr + off.stderr
    assert json.loads(on.stdout) == {"label": "hi"}
    assert json.loads(off.stdout) == {"label": "HI", "score": 0.5}


def test_the_config_keys_deepaas_predict_reads_are_documented_alike():
    """--help and docs/batch.md list the same config-file keys."""
    result = subprocess.run([PREDICT, "--help"], env=subprocess_env(),
                            capture_output=True, text=True, timeout=60)
    help_text = " ".join(result.stdout.split())
    in_help = re.search(r"its ((?:\w+, )*\w+ and \w+) apply unless given here",
                        help_text)
    assert in_help, help_text
    helped = set(re.findall(r"\w+", in_help[1])) - {"and"}
    row = next(line for line in (ROOT / "docs" / "batch.md").read_text().splitlines()
               if line.startswith("| `--config-file FILE`"))
    documented = set(re.findall(r"`(\w+)`", row))
    assert helped == documented == {"model_name", "warm", "gpus", "workers_per_gpu",
                                    "log_level"}


#: A model whose arguments share names with deepaas-cli's general options.
CLASHING_MODEL = '''
from marshmallow import fields


def get_predict_args():
    return {"debug": fields.Bool(load_default=False), "workers": fields.Int()}


def predict(**kwargs):
    return kwargs
'''

#: The options of DEEPaaS 2.6.0's deepaas-cli that concern the server.
SERVER_OPTIONS = ["--workers", "2", "-p", "3", "--nopredict-endpoint",
                  "--train-endpoint", "--nodebug-endpoint", "--doc-endpoint",
                  "--client-max-size", "1024", "--nowarm", "--listen-ip", "0.0.0.0",
                  "--listen-port", "8080", "--base-path", "/deepaas",
                  "--predict-endpoint", "false"]


def test_a_2x_command_line_with_logging_options_writes_its_log_file(site, image,
                                                                    tmp_path):
    result = cli(site, "--debug", "--log-dir", tmp_path, "--logfile", "cli.log",
                 "--log-date-format", "%H:%M:%S", "--nouse-json", "--nouse-syslog",
                 "--workers", "2", "--nodebug-endpoint", "predict", f"--files={image}")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # the log went to the file
    [line] = result.stdout.splitlines()
    assert json.loads(line)["name"] == "x.jpg"
    log = (tmp_path / "cli.log").read_text()
    assert re.search(r"^\d\d:\d\d:\d\d\.\d{3} DEBUG ", log, re.MULTILINE), log
    assert "--workers concerns deepaas-run's server, not one call: ignored" in log
    assert "--debug-endpoint concerns deepaas-run's server" in log


def test_debug_logs_on_stderr_and_the_answer_stays_the_only_json(site, image):
    result = cli(site, "-d", "predict", "--files", image)
    assert result.returncode == 0, result.stderr
    assert " DEBUG " in result.stderr
    assert "{" not in result.stderr and "}" not in result.stderr
    [line] = result.stdout.splitlines()
    assert json.loads(line) == {"name": "x.jpg", "size": image.stat().st_size}


@pytest.mark.parametrize("where", ["before", "after"])
def test_the_server_s_options_are_accepted_and_ignored(site, image, where):
    around = (SERVER_OPTIONS, []) if where == "before" else ([], SERVER_OPTIONS)
    result = cli(site, *around[0], "predict", "--files", image, *around[1])
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout)["name"] == "x.jpg"


def test_a_bad_value_of_a_server_option_is_still_a_usage_error(site):
    result = cli(site, "--workers", "many", "get_metadata")
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("deepaas-cli: error: argument --workers/-p: 'many': ")


def test_config_dir_files_apply_and_the_command_line_wins(site, image, tmp_path):
    folder = tmp_path / "conf.d"
    folder.mkdir()
    log = tmp_path / "from-config.log"
    (folder / "deepaas.conf").write_text(
        f"[DEFAULT]\nmodel_name = old-style\ndebug = true\nlog_file = {log}\n"
        "workers = 4\nlisten_port = 8080\n")
    # Two models installed: without the command line's name this would be
    # old-style (the config's), without either an error.
    result = cli(site, "--config-dir", folder, "--model-name", "files-model",
                 "predict", "--files", image, model=None)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "x.jpg"
    assert " DEBUG " in log.read_text()
    result = cli(site, "--config-dir", folder, "get_metadata", model=None)
    assert json.loads(result.stdout)["id"] == "old-1"


def test_after_the_method_a_model_argument_of_the_same_name_wins(tmp_path):
    (tmp_path / "clashing_model.py").write_text(CLASHING_MODEL)
    site = write_distribution(tmp_path, {"clashing": "clashing_model"})
    result = cli(site, "--debug", "--workers", "2", "predict", "--debug", "false",
                 "--workers", "3", model="clashing")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"debug": False, "workers": 3}
    assert " DEBUG " in result.stderr  # the --debug before the method is ours
