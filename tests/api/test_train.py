"""The training endpoints over a real server, real processes and real SQLite."""

from __future__ import annotations

import asyncio
import datetime
import re
import sqlite3
import time
import uuid as uuid_mod
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deepaas.training import TrainingService
from deepaas.training.backends.local import LocalBackend
from tests.processes import pid_exists, pid_running, poll, wait_for_file

TRAIN = "/v2/models/trainer/train/"


def service(tmp_path: Path, *, keep: int = 0, **local: Any) -> TrainingService:
    """A service whose local backend has the ``local`` options."""
    local.setdefault("cancel_grace", 2.0)
    return TrainingService(
        tmp_path / "state", backend=LocalBackend(**local), keep=keep
    )


async def start(client: Any, **params: Any) -> dict[str, Any]:
    resp = await client.post(TRAIN, params={k: str(v) for k, v in params.items()})
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def wait_until(client: Any, uuid: str, *statuses: str,
                     timeout: float = 30) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        resp = await client.get(f"{TRAIN}{uuid}")
        body: dict[str, Any] = await resp.json()
        assert resp.status == 200, body
        return body if body["status"] in statuses else None

    return await poll(reached, f"training {uuid} to be {' or '.join(statuses)}",
                      timeout)


def training_pid(record: Path) -> int:
    (start_file,) = record.glob("*.start")
    return int(start_file.name.split(".")[0])


async def wait_for_training_pid(record: Path, timeout: float = 30) -> int:
    async def started() -> bool:
        return any(record.glob("*.start"))

    await poll(started, "the training to start", timeout)
    return training_pid(record)


def store_snapshot(state: Path) -> tuple[list[tuple[Any, ...]], list[str]]:
    with sqlite3.connect(state / "trainings.sqlite") as conn:
        rows = conn.execute("SELECT * FROM trainings ORDER BY seq").fetchall()
    files = sorted(str(p.relative_to(state)) for p in (state / "trainings").rglob("*"))
    return rows, files


# -- the contract ------------------------------------------------------------


@pytest.mark.slow
async def test_a_training_answers_the_contract_shape(make_client, tmp_path):
    client = await make_client("trainer", trainings=service(tmp_path))
    started = await start(client, seconds=0.1)
    assert started["status"] == "running"
    # 32 lower-case hexadecimal digits of a random (version 4) UUID.
    assert re.fullmatch(r"[0-9a-f]{32}", started["uuid"]), started["uuid"]
    assert uuid_mod.UUID(hex=started["uuid"]).version == 4
    datetime.datetime.strptime(started["date"], "%Y-%m-%d %H:%M:%S.%f")
    assert started["args"] == {"seconds": 0.1, "fail": False, "child": False,
                               "stubborn": False, "talk": False, "record": ""}
    assert started["model"] == "trainer"
    href = f"{TRAIN}{started['uuid']}"
    assert {"rel": "logs", "type": "text/plain", "href": f"{href}/logs"} in (
        started["links"])

    done = await wait_until(client, started["uuid"], "done")
    result = done["result"]
    assert result["output"]["seconds"] == 0.1
    datetime.datetime.strptime(result["finish_date"], "%Y-%m-%d %H:%M:%S.%f")
    hours, minutes, seconds = result["duration"].split(":")
    assert (int(hours), int(minutes)) == (0, 0) and 0.1 <= float(seconds) < 30
    assert "message" not in done

    listing = await (await client.get(TRAIN)).json()
    assert [t["uuid"] for t in listing] == [started["uuid"]]
    assert listing[0] == done


@pytest.mark.slow
async def test_old_style_model_trains_through_the_contract(make_client, tmp_path):
    client = await make_client("old-style", trainings=service(tmp_path))
    resp = await client.post("/v2/models/old-style/train/", data={"epochs": "4"})
    body = await resp.json()
    assert resp.status == 200, body
    assert body["args"] == {"epochs": 4}
    done = await wait_until_model(client, "old-style", body["uuid"])
    assert done["result"]["output"] == {"epochs": 4}


async def wait_until_model(client: Any, model: str, uuid: str) -> dict[str, Any]:
    for _ in range(600):
        body = await (await client.get(f"/v2/models/{model}/train/{uuid}")).json()
        if body["status"] not in ("queued", "running"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(body)


@pytest.mark.slow
async def test_arguments_are_checked_in_worker_processes(make_client, tmp_path):
    client = await make_client("trainer", workers=1, trainings=service(tmp_path))
    bad = await client.post(TRAIN, params={"seconds": "soon"})
    assert bad.status == 422
    assert await bad.json() == {"seconds": ["Not a valid number."]}
    started = await start(client, seconds=0)
    await wait_until(client, started["uuid"], "done")


@pytest.mark.slow
async def test_links_carry_the_base_path(make_client, tmp_path):
    client = await make_client("trainer", trainings=service(tmp_path),
                               base_path="/deepaas")
    resp = await client.post("/deepaas" + TRAIN)
    body = await resp.json()
    assert resp.status == 200, body
    assert {"rel": "self", "href": f"/deepaas{TRAIN}{body['uuid']}"} in body["links"]


@pytest.mark.slow
async def test_arguments_in_a_json_body(make_client, tmp_path):
    client = await make_client("trainer", trainings=service(tmp_path))
    resp = await client.post(TRAIN, json={"seconds": 0, "talk": True})
    body = await resp.json()
    assert resp.status == 200, body
    assert body["args"]["talk"] is True


# -- cancelling ----------------------------------------------------------------


@pytest.mark.slow
async def test_cancel_stops_the_training_and_its_child(make_client, tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    client = await make_client("trainer", trainings=service(tmp_path))
    started = await start(client, seconds=60, child=True, record=record)
    child = int(await wait_for_file(record / "child.pid"))
    parent = training_pid(record)
    assert pid_exists(parent) and pid_exists(child)

    resp = await client.delete(f"{TRAIN}{started['uuid']}")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["status"] == "cancelled"
    assert body["message"] == "cancelled by a DELETE request"
    # Both are gone, reaped and all, by the time the answer arrives.
    assert not pid_exists(parent)
    assert not pid_exists(child)

    again = await (await client.get(f"{TRAIN}{started['uuid']}")).json()
    assert again["status"] == "cancelled"
    assert "result" not in again


@pytest.mark.slow
async def test_cancel_kills_what_ignores_sigterm_after_the_grace(make_client,
                                                                 tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    client = await make_client("trainer",
                               trainings=service(tmp_path, cancel_grace=0.5))
    started = await start(client, seconds=60, child=True, stubborn=True,
                          record=record)
    child = int(await wait_for_file(record / "child.pid"))
    parent = training_pid(record)

    began = time.monotonic()
    body = await (await client.delete(f"{TRAIN}{started['uuid']}")).json()
    assert body["status"] == "cancelled"
    assert time.monotonic() - began < 10
    assert not pid_running(parent)
    assert not pid_running(child)
    logs = await (await client.get(f"{TRAIN}{started['uuid']}/logs")).text()
    assert "SIGKILL sent" in logs


@pytest.mark.slow
async def test_a_queued_training_waits_and_can_be_cancelled(make_client, tmp_path):
    client = await make_client("trainer",
                               trainings=service(tmp_path, max_concurrent=1))
    first = await start(client, seconds=60)
    second = await start(client, seconds=0)
    assert first["status"] == "running"
    assert second["status"] == "queued"
    assert "start_date" not in second

    cancelled = await (await client.delete(f"{TRAIN}{second['uuid']}")).json()
    assert cancelled["status"] == "cancelled"
    assert "before it started" in cancelled["message"]
    logs = await client.get(f"{TRAIN}{second['uuid']}/logs")
    assert logs.status == 200

    third = await start(client, seconds=0)
    assert third["status"] == "queued"
    await client.delete(f"{TRAIN}{first['uuid']}")
    await wait_until(client, third["uuid"], "done")


# -- failures, timeouts and logs -----------------------------------------------


@pytest.mark.slow
async def test_a_raising_training_shows_error_and_logs_the_traceback(make_client,
                                                                     tmp_path):
    client = await make_client("trainer", trainings=service(tmp_path))
    started = await start(client, fail=True)
    body = await wait_until(client, started["uuid"], "error")
    assert body["message"] == "ValueError: the training diverged"
    assert "result" not in body
    logs = await (await client.get(f"{TRAIN}{started['uuid']}/logs")).text()
    assert "Traceback (most recent call last)" in logs
    assert "raise ValueError(\"the training diverged\")" in logs
    assert "training ended: error" in logs


@pytest.mark.slow
async def test_a_result_that_is_not_json_is_an_error(make_client, tmp_path):
    client = await make_client("unserializable", trainings=service(tmp_path))
    resp = await client.post("/v2/models/unserializable/train/")
    started = await resp.json()
    body = await wait_until_model(client, "unserializable", started["uuid"])
    assert body["status"] == "error"
    assert "not JSON" in body["message"]


@pytest.mark.slow
async def test_a_training_past_the_timeout_is_stopped(make_client, tmp_path):
    svc = service(tmp_path, timeout=3)
    client = await make_client("trainer", trainings=svc)
    started = await start(client, seconds=60)
    # The clock runs from the start of its process, which may not have
    # reached train() by then on a busy machine: either way it is stopped.
    body = await wait_until(client, started["uuid"], "error")
    assert "--train-timeout (3 s)" in body["message"]
    record = svc.store.get(started["uuid"])
    assert record is not None and record.pid is not None
    assert not pid_exists(record.pid)


@pytest.mark.slow
async def test_logs_hold_every_output_and_can_be_followed(make_client, tmp_path):
    svc = service(tmp_path, training_envs={"trainer": {"FAKE_TRAINING_ENV": "gpu7"}})
    client = await make_client("trainer", trainings=svc)
    started = await start(client, talk=True)
    uuid = started["uuid"]
    await wait_until(client, uuid, "done")

    resp = await client.get(f"{TRAIN}{uuid}/logs")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    assert resp.headers["X-Training-Status"] == "done"
    text = await resp.text()
    for line in ("to stdout from print", "to stderr from the file descriptor",
                 "WARNING fake.trainer: to the log from logging",
                 "from a child process", f"env {uuid} gpu7", "training ended: done"):
        assert line in text
    size = len(text.encode())
    assert int(resp.headers["X-Log-Offset"]) == size

    part = await client.get(f"{TRAIN}{uuid}/logs", params={"offset": "10"})
    assert (await part.read()) == text.encode()[10:]
    assert int(part.headers["X-Log-Offset"]) == size
    rest = await client.get(f"{TRAIN}{uuid}/logs", params={"offset": str(size)})
    assert await rest.read() == b""
    assert int(rest.headers["X-Log-Offset"]) == size

    tail = await client.get(f"{TRAIN}{uuid}/logs", params={"tail": "2"})
    assert (await tail.text()).splitlines() == text.splitlines()[-2:]


@pytest.mark.slow
async def test_logs_follow_a_running_training(make_client, tmp_path):
    client = await make_client("trainer", trainings=service(tmp_path))
    started = await start(client, seconds=60, talk=True)
    url = f"{TRAIN}{started['uuid']}/logs"
    offset, seen = 0, b""
    deadline = time.monotonic() + 30
    while b"from a child process" not in seen:
        assert time.monotonic() < deadline, seen
        resp = await client.get(url, params={"offset": str(offset)})
        assert resp.headers["X-Training-Status"] == "running"
        seen += await resp.read()
        offset = int(resp.headers["X-Log-Offset"])
        assert offset == len(seen)  # each read starts where the last one ended
        await asyncio.sleep(0.05)
    # One more read from the offset brings only what is new, so that what was
    # followed is exactly the log's beginning (an ignored ?offset repeats it).
    resp = await client.get(url, params={"offset": str(offset)})
    seen += await resp.read()
    whole = await (await client.get(url)).read()
    assert whole.startswith(seen) and b"from a child process" in seen
    await client.delete(f"{TRAIN}{started['uuid']}")


# -- uploads, deletion and retention ----------------------------------------------


@pytest.mark.slow
async def test_uploads_live_in_the_job_directory_until_it_ends(make_client, tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    svc = service(tmp_path)
    client = await make_client("trainer", trainings=svc, upload_dir=str(uploads))
    form = aiohttp.FormData()
    form.add_field("data", b"rows of data", filename="train.csv",
                   content_type="text/csv")
    form.add_field("seconds", "0")
    resp = await client.post(TRAIN, data=form)
    started = await resp.json()
    assert resp.status == 200, started
    # As DEEPaaS 2.x records it: [name, content_type, original_filename].
    assert started["args"]["data"] == ["data", "text/csv", "train.csv"]
    assert list(uploads.iterdir()) == []

    done = await wait_until(client, started["uuid"], "done")
    data = done["result"]["output"]["data"]
    assert data["content"] == "rows of data"
    assert data["original_filename"] == "train.csv"
    job_dir = svc.state_dir / "trainings" / started["uuid"]
    assert Path(data["path"]).parent == job_dir / "uploads"
    assert data["path"].endswith("train.csv")
    assert not (job_dir / "uploads").exists()
    assert (job_dir / "training.log").exists()


@pytest.mark.slow
async def test_deleting_a_finished_training_forgets_it_and_its_logs(make_client,
                                                                     tmp_path):
    svc = service(tmp_path)
    client = await make_client("trainer", trainings=svc)
    started = await start(client)
    await wait_until(client, started["uuid"], "done")
    job_dir = svc.state_dir / "trainings" / started["uuid"]
    assert job_dir.exists()

    resp = await client.delete(f"{TRAIN}{started['uuid']}/")
    body = await resp.json()
    assert resp.status == 200
    assert body["status"] == "done"
    assert not job_dir.exists()
    gone = await client.get(f"{TRAIN}{started['uuid']}")
    assert gone.status == 404
    assert await (await client.get(TRAIN)).json() == []


@pytest.mark.slow
async def test_retention_keeps_the_newest_finished_trainings(make_client, tmp_path):
    svc = service(tmp_path, keep=2)
    client = await make_client("trainer", trainings=svc)
    uuids = []
    for _ in range(3):
        started = await start(client)
        await wait_until(client, started["uuid"], "done")
        uuids.append(started["uuid"])
    listing = await (await client.get(TRAIN)).json()
    assert [t["uuid"] for t in listing] == uuids[1:]
    assert not (svc.state_dir / "trainings" / uuids[0]).exists()


@pytest.mark.slow
async def test_twenty_trainings_run_two_at_a_time(make_client, tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    client = await make_client("trainer",
                               trainings=service(tmp_path, max_concurrent=2))
    started = await asyncio.gather(
        *(start(client, seconds=0.2, record=record) for _ in range(20))
    )
    assert sorted(t["status"] for t in started) == ["queued"] * 18 + ["running"] * 2
    for training in started:
        await wait_until(client, training["uuid"], "done", timeout=120)

    spans = []
    for start_file in record.glob("*.start"):
        end_file = start_file.with_suffix(".end")
        spans.append((float(start_file.read_text()), float(end_file.read_text())))
    assert len(spans) == 20
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                    key=lambda event: (event[0], event[1]))
    at_once = peak = 0
    for _, change in events:
        at_once += change
        peak = max(peak, at_once)
    assert peak == 2


# -- bad input and switched-off endpoints ------------------------------------------


@pytest.mark.slow
async def test_bad_input_answers_json_4xx_and_changes_nothing(make_client, tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    svc = service(tmp_path)
    client = await make_client("trainer", trainings=svc, upload_dir=str(uploads))
    done = await start(client, talk=True)
    await wait_until(client, done["uuid"], "done")
    before = store_snapshot(svc.state_dir)
    unknown = "0" * 32

    cases = [
        ("GET", f"{TRAIN}{unknown}", {}, 404),
        ("DELETE", f"{TRAIN}{unknown}", {}, 404),
        ("GET", f"{TRAIN}{unknown}/logs", {}, 404),
        ("GET", f"{TRAIN}not-a-uuid", {}, 404),
        ("DELETE", f"{TRAIN}not-a-uuid", {}, 404),
        ("GET", f"{TRAIN}12345/logs", {}, 404),
        ("GET", f"/v2/models/old-style/train/{done['uuid']}", {}, 404),
        ("POST", "/v2/models/nope/train/", {}, 404),
        ("POST", TRAIN, {"params": {"seconds": "soon"}}, 422),
        ("POST", TRAIN, {"json": {"seconds": "soon", "fail": "maybe"}}, 422),
        ("POST", TRAIN, {"json": [1, 2]}, 400),
        ("POST", TRAIN, {"data": b"x", "headers": {"Content-Type": "text/csv"}}, 415),
        ("GET", f"{TRAIN}{done['uuid']}/logs", {"params": {"offset": "-1"}}, 400),
        ("GET", f"{TRAIN}{done['uuid']}/logs", {"params": {"tail": "x"}}, 400),
        ("GET", f"{TRAIN}{done['uuid']}/logs",
         {"params": {"tail": "1", "offset": "0"}}, 400),
        ("GET", f"{TRAIN}{done['uuid']}/logs", {"params": {"offset": "99999999"}},
         400),
        ("PUT", TRAIN, {}, 405),
    ]
    for method, url, kwargs, status in cases:
        resp = await client.request(method, url, **kwargs)
        body = await resp.json()
        assert resp.status == status, (method, url, kwargs, body)
        assert isinstance(body, dict) and body, body
    resp = await client.post(TRAIN, params={"seconds": "soon"})
    assert await resp.json() == {"seconds": ["Not a valid number."]}
    form = aiohttp.FormData()
    form.add_field("data", b"rows", filename="train.csv", content_type="text/csv")
    form.add_field("seconds", "soon")
    resp = await client.post(TRAIN, data=form)
    assert resp.status == 422

    assert store_snapshot(svc.state_dir) == before
    assert list(uploads.iterdir()) == []


async def test_a_switched_off_endpoint_answers_402(make_client, tmp_path):
    client = await make_client("trainer", trainings=service(tmp_path),
                               train_endpoint=False)
    for method, url in (("POST", TRAIN), ("GET", TRAIN),
                        ("GET", f"{TRAIN}{'0' * 32}"),
                        ("GET", f"{TRAIN}{'0' * 32}/logs")):
        resp = await client.request(method, url)
        assert resp.status == 402
        assert "disabled" in (await resp.json())["message"]


async def test_without_a_training_service_the_endpoints_answer_501(make_client):
    client = await make_client("trainer")
    resp = await client.post(TRAIN)
    assert resp.status == 501
    assert (await resp.json()) == {
        "message": "trainings are not configured on this server"}


async def test_a_model_without_train_answers_501(make_client, tmp_path):
    client = await make_client("echo", trainings=service(tmp_path))
    resp = await client.post("/v2/models/echo/train/")
    assert resp.status == 501
    assert "does not implement train" in (await resp.json())["message"]


@pytest.mark.slow
async def test_closing_the_server_stops_its_trainings(make_client, tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    svc = service(tmp_path, max_concurrent=1)
    client = await make_client("trainer", trainings=svc)
    running_one = await start(client, seconds=60, record=record)
    queued_one = await start(client, seconds=0)
    pid = await wait_for_training_pid(record)
    await client.close()

    assert not pid_exists(pid)
    for training in (running_one, queued_one):
        record_ = svc.store.get(training["uuid"])
        assert record_ is not None
        assert record_.status == "error"
        assert "server shut down" in (record_.message or "")



def raw_multipart(filename: bytes) -> tuple[bytes, str]:
    """A form with one upload whose file name is ``filename``, byte for byte."""
    boundary = "deepaasboundary"
    body = (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="data"; filename="' + filename
        + b'"\r\nContent-Type: text/csv\r\n\r\nrows of data\r\n'
        + f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="seconds"\r\n\r\n0\r\n'
        + f"--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.slow
async def test_an_upload_named_in_bytes_that_are_not_utf8_trains(make_client,
                                                                 tmp_path):
    """A client's file name with byte 0xFF: recorded with U+FFFD in its place."""
    svc = service(tmp_path)
    client = await make_client("trainer", trainings=svc)
    body, content_type = raw_multipart(b"caf\xe9-\xff.csv")
    resp = await client.post(TRAIN, data=body,
                             headers={"Content-Type": content_type})
    started = await resp.json()
    assert resp.status == 200, started
    name, kind, original = started["args"]["data"]
    assert (name, kind) == ("data", "text/csv")
    assert original.endswith(".csv") and "\ufffd" in original
    done = await wait_until(client, started["uuid"], "done")
    assert done["result"]["output"]["data"]["content"] == "rows of data"
    listed = await (await client.get(TRAIN)).json()
    assert [t["uuid"] for t in listed] == [started["uuid"]]
