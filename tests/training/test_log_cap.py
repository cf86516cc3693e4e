"""A training that prints a lot, through a real server and training process.

The log stays under ``--train-log-max-bytes``, keeps its start and its end,
marks where text was dropped, and a client following it with offsets never
goes backwards and loses no byte without being told.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from deepaas.api import ApiSettings, create_app
from deepaas.engine.build import build_executors
from deepaas.training import TrainingService
from deepaas.training.backends.local import LocalBackend
from tests.conftest import spec
from tests.fake_models.trainers import printed_line
from tests.processes import pid_running, poll

TRAIN = "/v2/models/printer/train/"
CAP = 64 * 1024
LINES = 30_000  # 2.16 MB of output, 33 times the cap
MARKER = re.compile(rb"\[deepaas: (\d+) bytes of output dropped here[^\n]*\n")
SERVER_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO deepaas: ")


async def serve(aiohttp_client: Any, service: TrainingService) -> Any:
    executors = build_executors([spec("printer")], workers=0)
    app = create_app(executors, settings=ApiSettings(), trainings=service)
    return await aiohttp_client(app)


async def post(client: Any, **params: Any) -> dict[str, Any]:
    resp = await client.post(TRAIN, params={k: str(v) for k, v in params.items()})
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def wait_ended(client: Any, uuid: str) -> dict[str, Any]:
    """The training's record, once it has ended."""

    async def record() -> dict[str, Any] | None:
        body: dict[str, Any] = await (await client.get(f"{TRAIN}{uuid}")).json()
        return body if body["status"] in ("done", "error", "cancelled") else None

    return await poll(record, f"training {uuid} to end", timeout=60)


@pytest.mark.slow
async def test_a_loud_training_keeps_the_start_and_the_end_of_its_log(
    installed_models, aiohttp_client, tmp_path
):
    service = TrainingService(tmp_path / "state", max_log_bytes=CAP)
    client = await serve(aiohttp_client, service)
    uuid = (await post(client, lines=LINES))["uuid"]
    logs = f"{TRAIN}{uuid}/logs"

    # Follow it while it runs, as the docs' loop does.
    offset, received, told_dropped, status = 0, 0, 0, "running"
    deadline = time.monotonic() + 120
    while status in ("queued", "running"):
        assert time.monotonic() < deadline, f"still {status} at offset {offset}"
        resp = await client.get(logs, params={"offset": str(offset)})
        assert resp.status == 200
        status = resp.headers["X-Training-Status"]
        body = await resp.read()
        next_offset = int(resp.headers["X-Log-Offset"])
        assert next_offset >= offset
        markers = list(MARKER.finditer(body))
        assert len(markers) <= 1
        for marker in markers:
            told_dropped += int(marker.group(1))
            received -= len(marker.group(0))
        received += len(body)
        offset = next_offset
        await asyncio.sleep(0.01)

    resp = await client.get(logs)
    text = await resp.read()
    total = int(resp.headers["X-Log-Offset"])
    dropped = int(resp.headers["X-Log-Dropped"])
    assert (
        service.state_dir / "trainings" / uuid / "training.log"
    ).stat().st_size <= CAP
    assert total == offset  # the follower ended where the log ends
    # Every byte was either received or reported dropped, none twice.
    assert received + told_dropped == total

    (marker,) = MARKER.finditer(text)
    assert int(marker.group(1)) == dropped > 2_000_000
    head, tail = text[: marker.start()].decode(), text[marker.end() :].decode()
    assert f"training {uuid} of model 'printer' started" in head.splitlines()[0]
    assert printed_line(0) + printed_line(1) in head
    assert len(head) + len(tail) + dropped == total
    assert tail.startswith("line ")  # the tail starts at a line
    assert printed_line(LINES - 1) in tail
    last = tail.splitlines()[-1]
    assert SERVER_LINE.match(last) and last.endswith("training ended: done")

    done = await (await client.get(f"{TRAIN}{uuid}")).json()
    assert done["status"] == "done"


@pytest.mark.slow
async def test_a_cancelled_training_ends_its_last_line_before_the_closing_line(
    installed_models, aiohttp_client, tmp_path
):
    record = tmp_path / "record"
    record.mkdir()
    service = TrainingService(tmp_path / "state", backend=LocalBackend(cancel_grace=5))
    client = await serve(aiohttp_client, service)
    uuid = (await post(client, lines=3, partial=True, seconds=60, record=record))[
        "uuid"
    ]
    logs = f"{TRAIN}{uuid}/logs"

    async def unfinished_line() -> bool:
        return (await (await client.get(logs)).text()).endswith("progress 50%")

    await poll(unfinished_line, "the unfinished line", timeout=60)
    resp = await client.delete(f"{TRAIN}{uuid}")
    assert (await resp.json())["status"] == "cancelled"

    text = await (await client.get(logs)).text()
    assert text.endswith("\n")
    lines = text.splitlines()
    at = lines.index("progress 50%")
    assert lines[at - 1] == printed_line(2).rstrip("\n")
    assert SERVER_LINE.match(lines[at + 1])
    assert lines[at + 1].endswith(
        "stopping (cancel): SIGTERM sent; SIGKILL follows after 5 s"
    )
    assert SERVER_LINE.match(lines[-1])
    assert lines[-1].endswith(
        "training ended: cancelled (cancelled by a DELETE request)"
    )
    # Each of the server's lines starts a line of its own.
    assert text.count("INFO deepaas: ") == sum(
        1 for line in lines if SERVER_LINE.match(line)
    )
    # SIGTERM raised SystemExit in train(): its finally block ran.
    assert (record / "finally").read_text() == "ran"


@pytest.mark.slow
async def test_an_uncapped_log_keeps_everything(
    installed_models, aiohttp_client, tmp_path
):
    service = TrainingService(tmp_path / "state", max_log_bytes=0)
    client = await serve(aiohttp_client, service)
    uuid = (await post(client, lines=2000))["uuid"]
    assert (await wait_ended(client, uuid))["status"] == "done"
    resp = await client.get(f"{TRAIN}{uuid}/logs")
    text = await resp.text()
    assert "".join(printed_line(n) for n in range(2000)) in text
    assert resp.headers["X-Log-Dropped"] == "0"
    assert int(resp.headers["X-Log-Offset"]) == len(text.encode())


def test_the_option_reaches_the_service(tmp_path: Path) -> None:
    from deepaas.cmd._settings import training_settings
    from deepaas.config import build_config
    from deepaas.training import training_service_from_settings

    conf = build_config(["--train-log-max-bytes", "20000"])
    settings = training_settings(conf)
    service = training_service_from_settings([spec("printer")], {}, settings, {})
    assert service is not None and service.max_log_bytes == 20000
    settings = training_settings(build_config([]))
    default = training_service_from_settings([spec("printer")], {}, settings, {})
    assert default is not None and default.max_log_bytes == 10 * 1024 * 1024


@pytest.mark.slow
async def test_a_process_that_outlives_its_training_still_logs(
    installed_models, aiohttp_client, tmp_path
):
    record = tmp_path / "record"
    record.mkdir()
    # The grace is how long the training process waits for its children.
    service = TrainingService(
        tmp_path / "state", backend=LocalBackend(cancel_grace=0.5)
    )
    client = await serve(aiohttp_client, service)
    # It starts a process of its own session, printing for 6 s, and returns.
    uuid = (await post(client, daemon=6, record=record))["uuid"]
    assert (await wait_ended(client, uuid))["status"] == "done"
    daemon = int((record / "daemon.pid").read_text())
    assert pid_running(daemon)  # not stopped: it left the training's group

    async def daemon_done() -> Any:
        text = await (await client.get(f"{TRAIN}{uuid}/logs")).text()
        return "daemon 59\n" in text and text

    # Its output still reaches the log, after the closing line, and no
    # broken pipe stopped it half way.
    text = await poll(daemon_done, "the daemon's last line", timeout=60)
    ended = text.index("training ended: done")
    assert "still writes to its output" in text[:ended]
    assert "daemon 59\n" in text[ended:]


@pytest.mark.slow
def test_a_cap_too_small_is_one_line_and_a_failure(installed_models, tmp_path, capsys):
    from deepaas.cmd.run import main

    code = main(
        [
            "--train-log-max-bytes",
            "100",
            "--model-name",
            "printer",
            "--listen-port",
            "0",
            "--state-dir",
            str(tmp_path / "state"),
        ]
    )
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "deepaas-run: error: --train-log-max-bytes must be 0 (no cap) "
        "or >= 16384 (got 100)"
    )
