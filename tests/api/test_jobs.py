"""Prediction jobs over a real server: Prefer: respond-async, poll, cancel, result."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deepaas.api import ApiSettings, create_app
from deepaas.api.security.auth import AuthPolicy, StaticTokens
from deepaas.api.security.guard import Guard
from deepaas.engine.build import build_executors
from deepaas.jobs import PredictJobService
from tests.conftest import spec
from tests.fake_models.jobs import PNG
from tests.processes import pid_exists, poll

PREDICT = "/v2/models/slow/predict/"
JOBS = "/v2/models/slow/predict/jobs/"
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
def make_server(installed_models: Any, aiohttp_client: Any, tmp_path: Path) -> Any:
    """A real server over the slow model, with a job service on ``tmp_path``."""

    async def make(
        *,
        workers: int = 1,
        settings: ApiSettings | None = None,
        guard: Guard | None = None,
        **options: Any,
    ) -> Any:
        executors = build_executors([spec("slow")], workers=workers)
        service = PredictJobService(tmp_path / "state", **options)
        app = create_app(executors, settings=settings or ApiSettings(),
                         predict_jobs=service, guard=guard)  # fmt: skip
        return await aiohttp_client(app)

    return make


async def submit(
    client: Any, headers: dict[str, str] | None = None, **params: Any
) -> dict[str, Any]:
    resp = await client.post(
        PREDICT,
        params={k: str(v) for k, v in params.items()},
        headers={**ASYNC, **(headers or {})},
    )
    body: dict[str, Any] = await resp.json()
    assert resp.status == 202, body
    assert resp.headers["Preference-Applied"] == "respond-async"
    assert resp.headers["Location"] == f"{JOBS}{body['uuid']}"
    return body


async def wait_until(
    client: Any, uuid: str, *statuses: str, timeout: float = 30
) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        resp = await client.get(f"{JOBS}{uuid}")
        body: dict[str, Any] = await resp.json()
        assert resp.status == 200, body
        return body if body["status"] in statuses else None

    return await poll(reached, f"job {uuid} to be {' or '.join(statuses)}", timeout)


def job_rows(state: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(state / "trainings.sqlite") as conn:
        return conn.execute("SELECT uuid, status FROM predict_jobs").fetchall()


@pytest.mark.slow
async def test_a_job_outlives_a_client_that_gives_up_and_is_polled_to_its_end(
    make_server, tmp_path
):
    client = await make_server()
    job = await submit(client, seconds=1.5)
    assert job["status"] in ("queued", "running")
    assert job["model"] == "slow"
    assert job["accept"] == "application/json"
    # A client whose timeout is shorter than the prediction gives up...
    with pytest.raises(asyncio.TimeoutError):
        await client.post(
            PREDICT, params={"seconds": "1.5"}, timeout=aiohttp.ClientTimeout(total=0.3)
        )
    short = aiohttp.ClientTimeout(total=0.5)
    # ...and one that polls with the same short timeout sees it through.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        resp = await client.get(f"{JOBS}{job['uuid']}", timeout=short)
        record = await resp.json()
        if record["status"] == "done":
            break
        assert record["status"] in ("queued", "running"), record
        resp = await client.get(f"{JOBS}{job['uuid']}/result", timeout=short)
        assert resp.status == 409, await resp.text()
        assert "not ready" in (await resp.json())["message"]
        await asyncio.sleep(0.1)
    assert record["status"] == "done", record
    assert record["result"]["media_type"] == "application/json"
    assert record["result"]["href"] == f"{JOBS}{job['uuid']}/result"
    resp = await client.get(record["result"]["href"], timeout=short)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert await resp.json() == {
        "status": "OK",
        "predictions": {
            "seconds": 1.5,
            "size": 0,
            "sha256": hashlib.sha256(b"").hexdigest(),
        },
    }


@pytest.mark.slow
async def test_a_file_result_comes_with_its_media_type_and_the_upload_is_kept(
    make_server, tmp_path
):
    client = await make_server()
    marks = tmp_path / "marks"
    marks.mkdir()
    form = aiohttp.FormData()
    form.add_field("data", b"pixels", filename="in.png", content_type="image/png")
    form.add_field("record", str(marks))
    form.add_field("seconds", "0.3")
    resp = await client.post(
        PREDICT, data=form, headers={**ASYNC, "Accept": "image/png"}
    )
    job = await resp.json()
    assert resp.status == 202, job
    assert job["accept"] == "image/png"
    assert job["args"]["data"] == {"filename": "in.png", "content_type": "image/png"}
    done = await wait_until(client, job["uuid"], "done", "error")
    assert done["status"] == "done", done
    assert done["media_type"] == "image/png"
    resp = await client.get(f"{JOBS}{job['uuid']}/result")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "image/png"
    assert await resp.read() == PNG + b"pixels"
    # The model read the upload from the job's own directory, which no
    # longer holds it: only the result stays.
    (upload,) = marks.glob("*.upload")
    state = tmp_path / "state"
    job_dir = state / "predict-jobs" / job["uuid"]
    assert Path(upload.read_text()).parent == job_dir / "uploads"
    assert sorted(p.name for p in job_dir.iterdir()) == [
        "inputs.sha256.json",
        "provenance.json",
        "result",
    ]
    # Its provenance record names the upload and the result by their digests.
    resp = await client.get(f"{JOBS}{job['uuid']}/provenance")
    assert resp.status == 200
    record = json.dumps(await resp.json())
    assert hashlib.sha256(b"pixels").hexdigest() in record
    assert hashlib.sha256(PNG + b"pixels").hexdigest() in record
    assert "deepaas:PredictJob" in record
    # Forgetting the job leaves nothing behind.
    resp = await client.delete(f"{JOBS}{job['uuid']}")
    assert resp.status == 200
    assert not job_dir.exists()
    assert (await client.get(f"{JOBS}{job['uuid']}")).status == 404
    assert job_rows(state) == []


@pytest.mark.slow
async def test_a_failing_job_keeps_the_answer_predict_would_have_given(make_server):
    client = await make_server()
    failing = await submit(client, fail="true")
    invalid = await submit(client, seconds="soon")
    record = await wait_until(client, failing["uuid"], "error")
    assert "asked to fail" in record["message"]
    resp = await client.get(f"{JOBS}{failing['uuid']}/result")
    assert resp.status == 500
    assert "asked to fail" in (await resp.json())["message"]
    await wait_until(client, invalid["uuid"], "error")
    resp = await client.get(f"{JOBS}{invalid['uuid']}/result")
    assert resp.status == 422
    assert await resp.json() == {"seconds": ["Not a valid number."]}
    # The same as the prediction without Prefer.
    sync = await client.post(PREDICT, params={"seconds": "soon"})
    assert sync.status == 422
    assert await sync.json() == {"seconds": ["Not a valid number."]}


@pytest.mark.slow
async def test_jobs_are_cancelled_while_queued_and_while_running(make_server, tmp_path):
    client = await make_server(max_concurrent=1)
    marks = tmp_path / "marks"
    marks.mkdir()
    # A job that would hold the one worker for a minute.
    running = await submit(client, seconds=60, record=marks)
    queued = await submit(client, seconds=30)
    await poll(lambda: _started(marks), "the first job to start")
    assert (await wait_until(client, running["uuid"], "running"))["status"]
    assert (await client.get(f"{JOBS}{queued['uuid']}")).status == 200
    record = await (await client.get(f"{JOBS}{queued['uuid']}")).json()
    assert record["status"] == "queued"

    resp = await client.delete(f"{JOBS}{queued['uuid']}")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["status"] == "cancelled"
    assert body["message"] == "cancelled by a DELETE request"
    resp = await client.delete(f"{JOBS}{running['uuid']}")
    body = await resp.json()
    assert body["status"] == "cancelled"
    assert "start_date" in body
    resp = await client.get(f"{JOBS}{running['uuid']}/result")
    assert resp.status == 409
    assert "cancelled" in (await resp.json())["message"]
    listed = await (await client.get(JOBS)).json()
    assert [j["status"] for j in listed] == ["cancelled", "cancelled"]
    # Neither job holds uploads or a result: only its provenance record.
    jobs_dir = tmp_path / "state" / "predict-jobs"
    assert [[p.name for p in d.iterdir()] for d in jobs_dir.iterdir()] == [
        ["provenance.json"],
        ["provenance.json"],
    ]
    resp = await client.get(f"{JOBS}{queued['uuid']}/provenance")
    assert '"cancelled"' in await resp.text()
    # Its work stopped with it: the worker that ran it was stopped and
    # replaced, and answers an ordinary prediction long before the minute.
    (started,) = marks.glob("*.start")
    started_at = time.monotonic()
    resp = await client.post(PREDICT, params={"seconds": "0"})
    assert resp.status == 200
    assert time.monotonic() - started_at < 20
    assert not pid_exists(int(started.stem))


async def _started(marks: Path) -> bool:
    return any(marks.glob("*.start"))


@pytest.mark.slow
async def test_past_the_bound_on_waiting_jobs_the_answer_is_503_with_retry_after(
    make_server,
):
    client = await make_server(max_jobs=2, max_concurrent=1, workers=2)
    first = await submit(client, seconds=2)
    await submit(client, seconds=2)  # queued behind the first
    resp = await client.post(PREDICT, params={"seconds": "1"}, headers=ASYNC)
    body = await resp.json()
    assert resp.status == 503, body
    assert resp.headers["Retry-After"] == "10"
    assert "--max-predict-jobs" in body["message"]
    # A prediction without Prefer is not a job, and is still answered (by
    # the worker that no job holds).
    resp = await client.post(PREDICT, params={"seconds": "0"})
    assert resp.status == 200
    # Once a job has ended, a new one is accepted.
    await client.delete(f"{JOBS}{first['uuid']}")
    await submit(client, seconds=0)


@pytest.mark.slow
async def test_past_the_bound_on_stored_jobs_the_answer_is_503_until_one_goes(
    make_server,
):
    client = await make_server(max_stored=1)
    job = await submit(client, seconds=0)
    await wait_until(client, job["uuid"], "done")
    resp = await client.post(PREDICT, params={"seconds": "0"}, headers=ASYNC)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "60"
    assert "--max-stored-predict-jobs" in (await resp.json())["message"]
    await client.delete(f"{JOBS}{job['uuid']}")
    await submit(client, seconds=0)


@pytest.mark.slow
async def test_retention_forgets_results_as_it_forgets_trainings(make_server, tmp_path):
    client = await make_server(keep=1)
    first = await submit(client, seconds=0)
    await wait_until(client, first["uuid"], "done")
    second = await submit(client, seconds=0)
    await wait_until(client, second["uuid"], "done")
    listed = await (await client.get(JOBS)).json()
    assert [j["uuid"] for j in listed] == [second["uuid"]]
    assert not (tmp_path / "state" / "predict-jobs" / first["uuid"]).exists()


@pytest.mark.slow
async def test_without_prefer_predict_answers_as_always_and_records_no_job(
    make_server, tmp_path
):
    client = await make_server()
    resp = await client.post(PREDICT, params={"seconds": "0"})
    assert resp.status == 200
    assert "Preference-Applied" not in resp.headers
    assert "Location" not in resp.headers
    assert (await resp.json())["status"] == "OK"
    # Another preference is not respond-async either.
    resp = await client.post(
        PREDICT, params={"seconds": "0"}, headers={"Prefer": "return=minimal"}
    )
    assert resp.status == 200
    assert await (await client.get(JOBS)).json() == []
    assert job_rows(tmp_path / "state") == []
    assert not any((tmp_path / "state" / "predict-jobs").iterdir())


async def test_without_a_job_service_the_preference_is_ignored(make_client):
    client = await make_client("slow", workers=0)
    resp = await client.post(PREDICT, params={"seconds": "0"}, headers=ASYNC)
    assert resp.status == 200
    assert "Preference-Applied" not in resp.headers
    assert await (await client.get(JOBS)).json() == []
    resp = await client.get(f"{JOBS}{'0' * 32}")
    assert resp.status == 501
    assert "not configured" in (await resp.json())["message"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"{JOBS}{'0' * 32}", 404),
        (f"{JOBS}not-a-job", 404),
        (f"/v2/models/nobody/predict/jobs/{'0' * 32}", 404),
    ],
)
async def test_unknown_jobs_and_models_answer_404_in_json(make_server, path, status):
    client = await make_server(workers=0)
    resp = await client.get(path)
    assert resp.status == status
    assert "message" in json.loads(await resp.text())


@pytest.mark.slow
async def test_the_prefer_header_is_read_as_rfc_7240_writes_it(make_server):
    client = await make_server(workers=0)
    for prefer in (
        "respond-async",
        "RESPOND-ASYNC",
        "wait=5, respond-async",
        "respond-async; foo=bar",
    ):
        resp = await client.post(
            PREDICT, params={"seconds": "0"}, headers={"Prefer": prefer}
        )
        assert resp.status == 202, prefer


async def test_both_api_descriptions_describe_the_job_routes(make_server):
    client = await make_server(workers=0)
    swagger = await (await client.get("/swagger.json")).json()
    openapi = await (await client.get("/openapi.json")).json()
    for document in (swagger, openapi):
        paths = document["paths"]
        assert set(paths[JOBS]) == {"get"}
        item = paths[JOBS + "{job_id}"]
        assert {"get", "delete"} <= set(item)
        assert "get" in paths[JOBS + "{job_id}/result"]
        assert "get" in paths[JOBS + "{job_id}/provenance"]
        assert "202" in paths[PREDICT]["post"]["responses"]
    assert swagger["definitions"]["PredictJob"]["properties"]["status"]["enum"] == [
        "queued",
        "running",
        "done",
        "error",
        "cancelled",
        "interrupted",
    ]
    result = swagger["paths"][JOBS + "{job_id}/result"]["get"]
    assert result["produces"] == ["application/json", "image/png"]
    # The 2.x predict operation keeps its parameters: no header is added.
    names = [p["name"] for p in swagger["paths"][PREDICT]["post"]["parameters"]]
    assert names == ["seconds", "fail", "record", "data", "accept"]


@pytest.mark.slow
async def test_jobs_need_the_token_that_predicting_needs(make_server):
    tokens = StaticTokens({"tok-predict-0123456789": ["predict"],
                           "tok-train-0123456789": ["train", "read"]})  # fmt: skip
    client = await make_server(workers=0, guard=Guard(auth=AuthPolicy(tokens=tokens)))
    predictor = {"Authorization": "Bearer tok-predict-0123456789"}
    trainer = {"Authorization": "Bearer tok-train-0123456789"}
    job = await submit(client, headers=predictor, seconds=0)
    for path in (JOBS, f"{JOBS}{job['uuid']}", f"{JOBS}{job['uuid']}/result"):
        assert (await client.get(path)).status == 401, path
        assert (await client.get(path, headers=trainer)).status == 403, path
    await poll(lambda: _status_is(client, job["uuid"], predictor, "done"), "the job")
    assert (await client.get(f"{JOBS}{job['uuid']}/result", headers=predictor)).ok
    resp = await client.delete(f"{JOBS}{job['uuid']}", headers=trainer)
    assert resp.status == 403
    assert (await client.delete(f"{JOBS}{job['uuid']}", headers=predictor)).ok


async def _status_is(
    client: Any, uuid: str, headers: dict[str, str], status: str
) -> bool:
    resp = await client.get(f"{JOBS}{uuid}", headers=headers)
    return bool((await resp.json())["status"] == status)


async def test_jobs_are_off_with_the_predict_endpoint(make_server):
    off = ApiSettings(predict_endpoint=False)
    client = await make_server(workers=0, settings=off)
    resp = await client.post(PREDICT, params={"seconds": "0"}, headers=ASYNC)
    assert resp.status == 402
    resp = await client.get(JOBS)
    assert resp.status == 402
    assert "disabled" in (await resp.json())["message"]
