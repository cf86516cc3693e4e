"""deepaas-cli: one call of a model method, options made from its fields."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepaas.cmd.cli import main
from deepaas.version import version_line
from tests.conftest import subprocess_env

SCRIPT = str(Path(sys.executable).parent / "deepaas-cli")


def call(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_get_metadata_prints_json_and_saves_it(
    installed_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "meta.json"
    code, out, _ = call(
        capsys,
        "--model-name",
        "old-style",
        "get_metadata",
        "--deepaas_method_output",
        saved,
    )
    assert code == 0
    assert json.loads(out)["id"] == "old-1"
    assert json.loads(saved.read_text()) == json.loads(out)


def test_warm_runs_the_model_warm(
    installed_models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = tmp_path / "warmed.txt"  # warm() writes its process id here
    monkeypatch.setenv("DEEPAAS_TEST_WARM_FILE", str(record))
    code, _, err = call(capsys, "--model-name", "warm-recorder", "warm")
    assert code == 0 and "model 'warm-recorder' warmed" in err
    assert record.read_text() == f"{os.getpid()}\n"  # once, in this process


def test_predict_options_come_from_the_fields(
    installed_models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = call(capsys, "--model-name", "old-style", "predict", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "--data PATH image; path of a local file; required" in text
    assert '--mode {fast,slow} mode; one of: fast, slow; default: "fast"' in text
    assert "--n INT count; default: 3" in text
    assert "--probs LIST" in text and "default: [0.1]" in text


def test_predict_converts_values_with_the_fields(
    installed_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG 12345")
    saved = tmp_path / "answer.json"
    code, out, _ = call(
        capsys,
        "--model-name",
        "old-style",
        "predict",
        "--data",
        image,
        "--mode",
        "slow",
        "--n",
        "7",
        "--probs",
        "[0.5, 0.25]",
        "--deepaas_method_output",
        saved,
    )
    assert code == 0
    answer = json.loads(out)
    assert answer["original_filename"] == "cat.png"
    assert answer["content_type"] == "image/png"
    # the model got a temporary copy, removed after the call, not the user's file
    assert answer["size"] == 10 and answer["path"] != str(image)
    assert not os.path.exists(answer["path"])
    assert (answer["mode"], answer["n"], answer["probs"]) == ("slow", 7, [0.5, 0.25])
    assert json.loads(saved.read_text()) == answer
    assert image.exists()  # the user's file is never removed
    code, out, _ = call(
        capsys,
        "--model-name",
        "old-style",
        "predict",
        "--data",
        image,
        "--probs",
        "0.3",
        "--probs",
        "0.4",
    )
    assert json.loads(out)["probs"] == [0.3, 0.4]


def test_booleans_and_required_text(
    installed_models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = call(
        capsys,
        "--model-name",
        "new-style",
        "predict",
        "--text",
        "hi",
        "--score",
        "0.25",
    )
    assert code == 0 and json.loads(out) == {"label": "HI", "score": 0.25}
    code, out, _ = call(
        capsys, "--model-name", "new-style", "predict", "--text", "hi", "--bad"
    )
    assert code == 0 and json.loads(out) == {"label": "hi"}


def test_non_json_answers_go_to_the_output_file(
    installed_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "pixel.png"
    code, out, err = call(
        capsys, "--model-name", "images", "predict", "--deepaas_method_output", saved
    )
    assert code == 0 and out == ""
    assert saved.read_bytes() == b"\x89PNG fake"
    assert "wrote 9 bytes of image/png" in err
    text_in = tmp_path / "in.txt"
    text_in.write_text("abc")
    saved = tmp_path / "answer.txt"
    code, _, _ = call(
        capsys,
        "--model-name",
        "batch-reader",
        "predict",
        "--data",
        text_in,
        "--accept",
        "text/plain",
        "--deepaas_method_output",
        saved,
    )
    assert code == 0 and saved.read_text() == "in.txt:3\n"


def test_train_runs_to_the_end_and_prints_its_result(
    installed_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = call(capsys, "--model-name", "old-style", "train", "--epochs", "4")
    record = json.loads(out)
    assert code == 0 and record["result"]["output"] == {"epochs": 4}
    assert (record["status"], record["args"]) == ("done", {"epochs": 4})


@pytest.mark.slow
def test_the_console_script_keeps_standard_output_for_the_answer(
    installed_models: Path,
) -> None:
    proc = subprocess.run(
        [SCRIPT, "train", "--model-name", "trainer", "--talk", "true"],
        env=subprocess_env(installed_models),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)["result"]["output"]) == {"pid", "seconds"}
    assert "to stdout from print" in proc.stderr
    assert "from a child process" in proc.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--model-name", "old-style", "predict"],
            "the following arguments are required: --data",
        ),
        (
            ["--model-name", "old-style", "predict", "--data", "nope.png"],
            "argument --data: file 'nope.png' does not exist",
        ),
        (
            [
                "--model-name",
                "old-style",
                "--strict",
                "predict",
                "--data",
                "IMG",
                "--mode",
                "medium",
            ],
            "invalid arguments: --mode: Must be one of:",
        ),
        (
            [
                "--model-name",
                "old-style",
                "predict",
                "--data",
                "IMG",
                "--n",
                "11",
                "--strict",
            ],
            "invalid arguments: --n: Must be greater than or equal to 1",
        ),
        (
            ["--model-name", "old-style", "predict", "--data", "IMG", "--n", "many"],
            "invalid arguments: --n: Not a valid integer.",
        ),
        (
            ["--model-name", "old-style", "predict", "--data", "IMG", "--probs", "[1,"],
            "argument --probs: '[1,' is not a JSON or Python literal",
        ),
        (
            ["--model-name", "old-style", "fly"],
            "argument METHOD: invalid choice: 'fly'",
        ),
        (["--model-name", "nope", "get_metadata"], "model 'nope' is not installed"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    installed_models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    image = tmp_path / "img.png"
    image.write_bytes(b"x")
    args = [str(image) if a == "IMG" else a for a in argv]
    code, out, err = call(capsys, *args)
    lines = err.strip().splitlines()
    expected = 1 if "not installed" in message else 2
    assert code == expected and out == ""
    assert len(lines) == 1 and lines[0].startswith("deepaas-cli: error: ")
    assert message in lines[0]


def test_a_failing_model_exits_1_with_its_message(
    installed_models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = call(capsys, "--model-name", "failing", "predict")
    assert code == 1
    assert err.strip() == "deepaas-cli: error: RuntimeError: the model exploded"


@pytest.mark.slow
def test_the_console_script_pipes_json(installed_models: Path) -> None:
    proc = subprocess.run(
        [SCRIPT, "predict", "--model-name", "new-style", "--text", "shell"],
        env=subprocess_env(installed_models),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"label": "SHELL", "score": 0.5}


@pytest.mark.parametrize(
    ("options", "warmed"),
    [
        ([], True),
        (["--warm"], True),
        (["--warm", "false"], False),
        (["--nowarm"], False),
        (["--no-warm"], False),
    ],
)
def test_warm_runs_before_predict_unless_switched_off(
    installed_models: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    warmed: bool,
) -> None:
    """As deepaas-run's workers, deepaas-cli warms the model before its call."""
    code, out, err = call(capsys, *options, "--model-name", "warm-recorder", "predict")
    assert code == 0, err
    assert json.loads(out)["warmed"] is warmed


def test_warm_from_a_config_file_and_the_command_line_over_it(
    installed_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "deepaas.conf"
    conf.write_text("[DEFAULT]\nmodel_name = warm-recorder\nwarm = true\n")
    code, out, _ = call(capsys, "--config-file", conf, "predict")
    assert code == 0 and json.loads(out)["warmed"] is True
    code, out, _ = call(capsys, "--config-file", conf, "predict", "--nowarm")
    assert code == 0 and json.loads(out)["warmed"] is False


def test_version_needs_no_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = call(capsys, "--model-name", "not-installed", "--version")
    assert code == 0 and out.strip() == version_line()
