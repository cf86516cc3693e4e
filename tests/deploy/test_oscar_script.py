"""deploy/oscar/script.sh run as OSCAR runs it, on the demo model.

OSCAR starts the script with ``bash script.sh`` in a working directory of
its own, with INPUT_FILE_PATH (the uploaded file) and TMP_OUTPUT_DIR (what
is left there is uploaded). These tests do the same with the real
deepaas-cli of the checkout's virtualenv and look at what would be
uploaded.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, subprocess_env

SCRIPT = ROOT / "deploy" / "oscar" / "script.sh"
VENV_BIN = ROOT / ".venv" / "bin"

pytestmark = pytest.mark.slow  # each run starts deepaas-cli (and Python) twice

FLOWERS_CSV = (
    "sepal_length,sepal_width,petal_length,petal_width\n"
    "5.1,3.5,1.4,0.2\n"
    "6.7,3.0,5.6,2.1\n"
)


@dataclass
class Invocation:
    status: int
    stdout: str
    stderr: str
    outputs: dict[str, bytes]

    def log(self, name: str) -> str:
        return self.outputs[f"{name}.log"].decode()


def run_service(
    tmp_path: Path, input_name: str, content: bytes | str, **env: str
) -> Invocation:
    """One OSCAR invocation of the script on one uploaded file."""
    uploads = tmp_path / "uploads"
    uploads.mkdir(exist_ok=True)
    input_file = uploads / input_name
    if isinstance(content, str):
        content = content.encode()
    input_file.write_bytes(content)
    outputs = tmp_path / "outputs"
    outputs.mkdir(exist_ok=True)
    workdir = tmp_path / "workdir"
    workdir.mkdir(exist_ok=True)
    environment = subprocess_env(**env)
    environment.update(
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        INPUT_FILE_PATH=str(input_file),
        TMP_OUTPUT_DIR=str(outputs),
        TMPDIR=str(tmp_path),
    )
    run = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert input_file.read_bytes() == content, "the uploaded file was changed"
    assert not list(workdir.iterdir()), "the script left files in its working dir"
    assert [p.name for p in tmp_path.glob("oscar-deepaas.*")] == []
    return Invocation(
        run.returncode,
        run.stdout,
        run.stderr,
        {p.name: p.read_bytes() for p in outputs.iterdir()},
    )


def labels(answer: bytes) -> list[str]:
    prediction = json.loads(answer)
    assert prediction["status"] == "OK"
    return [p["label"] for p in prediction["predictions"]]


def test_a_json_object_of_arguments_gives_name_json(tmp_path: Path) -> None:
    run = run_service(tmp_path, "flower.json", '{"sample": [6.7, 3.0, 5.6, 2.1]}')
    assert run.status == 0, run.stderr
    assert sorted(run.outputs) == ["flower.json", "flower.log"]
    assert labels(run.outputs["flower.json"]) == ["virginica"]
    log = run.log("flower")
    # The line the research platform's own script greps for the output.
    (line,) = [li for li in log.splitlines() if "New output is" in li]
    assert line.split(" ")[4].endswith(".json")
    assert "deepaas-cli --deepaas_method_output" in log
    assert run.stderr == log  # the log also reaches OSCAR's job log


def test_the_version_check_reads_a_bare_version(tmp_path: Path) -> None:
    version = (
        subprocess.run(
            [VENV_BIN / "deepaas-cli", "--version"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    release = version.split("-")[0]
    assert tuple(int(p) for p in release.split(".")) >= (2, 5, 0)
    run = run_service(tmp_path, "flower.json", '{"sample": [5.1, 3.5, 1.4, 0.2]}')
    assert f"DEEPaaS {version}," in run.log("flower")


def test_another_file_is_the_models_only_file_argument(tmp_path: Path) -> None:
    run = run_service(tmp_path, "flowers.csv", FLOWERS_CSV)
    assert run.status == 0, run.stderr
    assert sorted(run.outputs) == ["flowers.json", "flowers.log"]
    assert labels(run.outputs["flowers.json"]) == ["setosa", "virginica"]
    assert "passing it as --data of model 'deepaas-demo'" in run.log("flowers")


def test_oscar_files_are_decoded_and_other_media_types_keep_their_extension(
    tmp_path: Path,
) -> None:
    request = {
        "oscar-files": [
            {
                "key": "data",
                "file_format": "csv",
                "data": base64.b64encode(FLOWERS_CSV.encode()).decode(),
            }
        ],
        "accept": "text/csv",
    }
    run = run_service(tmp_path, "batch.json", json.dumps(request))
    assert run.status == 0, run.stderr
    assert sorted(run.outputs) == ["batch.csv", "batch.log"]
    rows = run.outputs["batch.csv"].decode().splitlines()
    assert rows[0].startswith("label,")
    assert [r.split(",")[0] for r in rows[1:]] == ["setosa", "virginica"]


def test_a_synchronous_invocation_prints_the_answer(tmp_path: Path) -> None:
    run = run_service(tmp_path, "event-file", '{"sample": [5.1, 3.5, 1.4, 0.2]}')
    assert run.status == 0, run.stderr
    assert labels(run.stdout.encode()) == ["setosa"]
    assert run.outputs["event-file.json"].decode() == run.stdout


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (
            '{"sample": [5.1, 3.5, 1.4, 0.2], "petals": 3}',
            "unrecognized arguments: --petals=3",
        ),
        ('{"sample": "many"}', "--sample"),
        ('{"sample": [5.1, 3.5', "the input is not valid JSON"),
        ("[5.1, 3.5, 1.4, 0.2]", "must be a JSON object of predict arguments"),
        ('{"oscar-files": [{"key": "data", "data": "***"}]}', "is not base64"),
        ('{"deepaas_method_output": "/etc/x"}', "is not an argument this script"),
    ],
)
def test_bad_arguments_fail_with_a_log_and_no_output(
    tmp_path: Path, content: str, says: str
) -> None:
    run = run_service(tmp_path, "flower.json", content)
    assert run.status != 0
    assert sorted(run.outputs) == ["flower.log"]
    log = run.log("flower")
    assert says in log
    assert log.rstrip().splitlines()[-1].startswith("[oscar] error: ")


def test_a_file_the_model_refuses_leaves_no_output(tmp_path: Path) -> None:
    run = run_service(tmp_path, "flowers.csv", "a,b\n1,2\n3,4\n")
    assert run.status != 0
    assert sorted(run.outputs) == ["flowers.log"]
    log = run.log("flowers")
    assert "line 2 of the CSV has 2 values, expected 4" in log
    assert "[oscar] error: deepaas-cli failed with exit status" in log


def test_another_file_needs_exactly_one_file_argument(
    tmp_path: Path, installed_models: Path
) -> None:
    run = run_service(
        tmp_path,
        "photo.jpg",
        b"\xff\xd8\xff",
        PYTHONPATH=f"{installed_models}{os.pathsep}{ROOT}",
        DEEPAAS_V2_MODEL="batch-two-files",
    )
    assert run.status != 0
    assert sorted(run.outputs) == ["photo.log"]
    assert "model 'batch-two-files' has 2 file arguments (left, right)" in run.log(
        "photo"
    )


def test_without_oscars_variables_it_says_so(tmp_path: Path) -> None:
    run = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
        timeout=30,
    )
    assert run.returncode == 2
    assert "INPUT_FILE_PATH and TMP_OUTPUT_DIR must be set" in run.stderr
