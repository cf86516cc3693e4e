"""The container image of deploy/container, built and run with podman.

These tests build a real image (a Debian base from debootstrap, then the
model image from wheels of this source tree, the demo model inside) and run
it the way a user does: the server answers on a published port, deepaas-cli
runs as the container's command, SIGTERM stops it.  Building takes minutes,
so they run only when asked: ``pytest -m container`` or
``DEEPAAS_TEST_CONTAINER=1``.  They need root, podman and debootstrap, and
skip saying which is missing.  A base image built earlier
(``localhost/deepaas-base:bookworm``, or ``$DEEPAAS_TEST_BASE_IMAGE``) is
reused; the model image is always built afresh.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.processes import wait_for

pytestmark = [pytest.mark.container, pytest.mark.slow]

CONTAINER_DIR = ROOT / "deploy" / "container"
BASE_IMAGE = os.environ.get(
    "DEEPAAS_TEST_BASE_IMAGE", "localhost/deepaas-base:bookworm"
)
IMAGE = "localhost/deepaas-model:test"
STATE_DIR = "/var/lib/deepaas"

#: The demo model's CSV input: one flower per line, four measurements.
SAMPLES = {
    "setosa.csv": ("5.1,3.5,1.4,0.2\n4.9,3.0,1.4,0.2\n", "setosa"),
    "virginica.csv": ("7.7,3.8,6.7,2.2\n", "virginica"),
    "versicolor.csv": (
        "sepal_length,sepal_width,petal_length,petal_width\n6.0,2.9,4.5,1.5\n",
        "versicolor",
    ),
}


def _run_limits() -> list[str]:
    """``--ulimit`` options that any host lets podman set.

    Without them podman asks the runtime for its default limits (1048576
    open files, the host's process limit), and a host that withholds
    CAP_SYS_RESOURCE from podman (a container or VM sandbox) refuses to
    raise them: "error setting rlimit type 7: operation not permitted".
    """
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 65536)
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 16384)
    return [
        "--ulimit",
        f"nofile={nofile}:{nofile}",
        "--ulimit",
        f"nproc={nproc}:{nproc}",
    ]


def _podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        pytest.fail(
            f"podman {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}"
        )
    return done


def _why_not() -> str:
    """Why the container tests cannot run here, or ''."""
    if os.geteuid() != 0:
        return "building the base image needs root (debootstrap, rootful podman)"
    for tool in ("podman", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install podman debootstrap)"
    return ""


@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest) -> Iterator[str]:
    """The model image, built from this source tree; removed afterwards."""
    asked = "container" in (request.config.getoption("markexpr") or "")
    if not asked and os.environ.get("DEEPAAS_TEST_CONTAINER") != "1":
        pytest.skip(
            "builds a container image (minutes): "
            "run with -m container or DEEPAAS_TEST_CONTAINER=1"
        )
    why = _why_not()
    if why:
        pytest.skip(why)
    if _podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        made = subprocess.run(
            [str(CONTAINER_DIR / "make-debian-base.sh"), BASE_IMAGE],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    env = {**os.environ, "PYTHON": sys.executable, "BUILD_OPTS": "--isolation chroot"}
    built = subprocess.run(
        [str(CONTAINER_DIR / "build.sh"), "--base", BASE_IMAGE, "--tag", IMAGE],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    yield IMAGE
    _podman("rmi", "--force", IMAGE, check=False)


@pytest.fixture
def container_name() -> Iterator[str]:
    """A fresh container name; that container and its volumes go afterwards."""
    name = f"deepaas-test-{uuid.uuid4().hex[:12]}"
    yield name
    _podman("rm", "--force", "--volumes", name, check=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def _start_server(image: str, name: str, *command: str) -> str:
    """Run the image's server detached on a loopback port; answer its URL."""
    port = _free_port()
    _podman(
        "run",
        "--detach",
        "--name",
        name,
        *_run_limits(),
        "--publish",
        f"127.0.0.1:{port}:5000",
        image,
        *command,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        state = _podman("inspect", "--format", "{{.State.Running}}", name).stdout
        assert state.strip() == "true", _podman("logs", name).stderr[-3000:]
        return _get(url + "/ready")[0] == 200

    wait_for(ready, "the container's server to be ready", timeout=90, interval=0.5)
    return url


def _predict(url: str, csv: str) -> dict:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="data"; filename="flowers.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
        f"{csv}\r\n--{boundary}--\r\n"
    ).encode()
    request = urllib.request.Request(
        url + "/v2/models/deepaas-demo/predict/",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
        return json.loads(answer.read())


def test_image_runs_as_non_root_under_tini_with_the_state_volume(image: str) -> None:
    config = json.loads(_podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "1000:1000"
    assert STATE_DIR in config["Volumes"]
    assert config["Entrypoint"][0] == "/usr/bin/tini"
    assert "5000/tcp" in config["ExposedPorts"]

    seen = _podman(
        "run",
        "--rm",
        *_run_limits(),
        image,
        "sh",
        "-c",
        f"id -un; id -u; stat -c %U {STATE_DIR}; touch {STATE_DIR}/written; "
        "grep -c ' /var/lib/deepaas ' /proc/self/mountinfo; "
        "tr '\\0' ' ' </proc/1/cmdline; echo; command -v python",
    ).stdout.splitlines()
    assert seen[:3] == ["deepaas", "1000", "deepaas"]
    assert seen[3] == "1", "the state directory is not a mounted volume"
    assert seen[4].startswith("/usr/bin/tini -s -- sh -c")
    assert seen[5] == "/opt/deepaas/bin/python"


def test_server_answers_a_prediction_and_keeps_state_on_the_volume(
    image: str, container_name: str
) -> None:
    url = _start_server(image, container_name)

    answer = _predict(url, SAMPLES["virginica.csv"][0])

    assert answer["status"] == "OK"
    assert [p["label"] for p in answer["predictions"]] == ["virginica"]
    mounts = json.loads(_podman("inspect", container_name).stdout)[0]["Mounts"]
    (volume,) = [m for m in mounts if m["Destination"] == STATE_DIR]
    assert volume["Type"] == "volume"
    # The training store the server opened lives in the volume on the host.
    assert any(Path(volume["Source"]).iterdir()), "nothing in the state volume"


def test_deepaas_cli_runs_as_the_command_once_per_file(
    image: str, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)  # the container's user reads the files
    for file_name, (csv, _label) in SAMPLES.items():
        (tmp_path / file_name).write_text(csv)
        (tmp_path / file_name).chmod(0o644)

    for file_name, (_csv, label) in SAMPLES.items():
        done = _podman(
            "run",
            "--rm",
            *_run_limits(),
            "--volume",
            f"{tmp_path}:/data:ro",
            image,
            "deepaas-cli",
            "predict",
            "--data",
            f"/data/{file_name}",
        )
        answer = json.loads(done.stdout)
        labels = {p["label"] for p in answer["predictions"]}
        assert labels == {label}, (file_name, done.stdout, done.stderr[-2000:])


def test_sigterm_stops_the_server_cleanly(image: str, container_name: str) -> None:
    url = _start_server(
        image,
        container_name,
        "deepaas-run",
        "--listen-ip",
        "0.0.0.0",
        "--shutdown-timeout",
        "3",
    )
    _predict(url, SAMPLES["setosa.csv"][0])

    started = time.monotonic()
    _podman("kill", "--signal", "TERM", container_name)
    exit_code = _podman("wait", container_name, timeout=60).stdout.strip()
    took = time.monotonic() - started

    assert exit_code == "0"
    assert took < 3 + 5, f"took {took:.1f} s to stop"
    logs = _podman("logs", container_name)
    log = logs.stdout + logs.stderr
    assert "deepaas.run: stopped" in log, log[-2000:]


def test_the_oscar_script_runs_in_the_image(image: str, tmp_path: Path) -> None:
    """deploy/oscar/script.sh as OSCAR runs it: one file in, NAME.json out."""
    inputs, outputs = tmp_path / "inputs", tmp_path / "outputs"
    inputs.mkdir()
    outputs.mkdir()
    for folder in (tmp_path, inputs, outputs):
        folder.chmod(0o777)  # the container's user writes the outputs
    (inputs / "flower.json").write_text(json.dumps({"sample": [7.7, 3.8, 6.7, 2.2]}))
    (inputs / "flower.json").chmod(0o666)
    done = _podman(
        "run",
        "--rm",
        *_run_limits(),
        "--volume",
        f"{ROOT / 'deploy' / 'oscar'}:/oscar:ro",
        "--volume",
        f"{inputs}:/inputs",
        "--volume",
        f"{outputs}:/outputs",
        "--env",
        "INPUT_FILE_PATH=/inputs/flower.json",
        "--env",
        "TMP_OUTPUT_DIR=/outputs",
        "--workdir",
        "/tmp",
        image,
        "bash",
        "/oscar/script.sh",
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert sorted(p.name for p in outputs.iterdir()) == ["flower.json", "flower.log"]
    answer = json.loads((outputs / "flower.json").read_text())
    assert answer["predictions"][0]["label"] == "virginica", answer
