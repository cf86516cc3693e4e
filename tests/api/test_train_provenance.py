"""A training's provenance record, fetched over the API once it has ended.

``GET /v2/models/<name>/train/<uuid>/provenance`` answers the W3C
PROV-JSON document written in the training's folder: the model's package,
the arguments, the SHA-256 of each upload as received and of the output,
the times, host, devices and outcome.  The training answers themselves
keep their wire format.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import prov.model
import pytest

from deepaas.provenance import artifacts, record_summary
from deepaas.provenance.record import canonical_json
from deepaas.training import TrainingService
from deepaas.training.backends.local import LocalBackend
from tests.api.test_train import TRAIN, start, wait_until


def service(tmp_path: Path) -> TrainingService:
    return TrainingService(tmp_path / "state", backend=LocalBackend(cancel_grace=2.0))


@pytest.mark.slow
async def test_a_finished_training_answers_its_prov_json_record(
    make_client: Any, tmp_path: Path
) -> None:
    svc = service(tmp_path)
    client = await make_client("trainer", trainings=svc)
    form = aiohttp.FormData()
    form.add_field("data", b"rows of data", filename="train.csv",
                   content_type="text/csv")  # fmt: skip
    form.add_field("seconds", "0.3")
    resp = await client.post(TRAIN, data=form)
    started = await resp.json()
    uuid = started["uuid"]

    # Still running: no record yet, said in JSON.
    resp = await client.get(f"{TRAIN}{uuid}/provenance")
    assert resp.status == 404
    assert "has not ended" in (await resp.json())["message"]

    done = await wait_until(client, uuid, "done")
    # The training's own answer is as before: no new key, the same links.
    assert not any("provenance" in key for key in done)
    assert [link["rel"] for link in done["links"]] == ["self", "logs"]
    resp = await client.get(f"{TRAIN}{uuid}/provenance")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    record = await resp.json()
    prov.model.ProvDocument.deserialize(content=json.dumps(record), format="json")

    summary = record_summary(record)
    assert summary["type"] == "deepaas:Training"
    assert summary["outcome"] == "done"
    assert summary["startTime"] < summary["endTime"]
    (model,) = [
        e for e in record["entity"].values() if e["prov:type"]["$"] == "deepaas:Model"
    ]
    assert model["deepaas:entryPoint"] == "trainer = tests.fake_models.trainers:Trainer"
    assert model["deepaas:package"] == "deepaas_test_models"
    (upload,) = artifacts(record, "Input")
    assert upload.name == "data: train.csv"
    assert upload.sha256 == hashlib.sha256(b"rows of data").hexdigest()
    (output,) = artifacts(record, "Output")
    expected = canonical_json(done["result"]["output"]).encode()
    assert output.sha256 == hashlib.sha256(expected).hexdigest()
    # Stored in the training's own folder, removed with it.
    job_dir = svc.state_dir / "trainings" / uuid
    assert json.loads((job_dir / "provenance.json").read_text()) == record


@pytest.mark.slow
async def test_a_failed_training_records_the_error(
    make_client: Any, tmp_path: Path
) -> None:
    client = await make_client("trainer", trainings=service(tmp_path))
    started = await start(client, fail="true")
    await wait_until(client, started["uuid"], "error")
    resp = await client.get(f"{TRAIN}{started['uuid']}/provenance")
    record = await resp.json()
    summary = record_summary(record)
    assert summary["outcome"] == "error"
    assert "the training diverged" in summary["message"]
    assert artifacts(record, "Output") == []


async def test_an_unknown_training_has_no_record(
    make_client: Any, tmp_path: Path
) -> None:
    client = await make_client("trainer", trainings=service(tmp_path))
    resp = await client.get(f"{TRAIN}{'0' * 32}/provenance")
    assert resp.status == 404
    assert "message" in await resp.json()
