"""``--provenance-log PATH``: a provenance record for every answered prediction.

Off by default (nothing is written, nothing is done per request).  On, the
server appends to a JSON Lines file: first a line describing the server
and its models, then one W3C PROV-JSON document per answered prediction
with the arguments, the SHA-256 of each uploaded file as received and of
the answer as sent.  The answers themselves do not change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import prov.model
import pytest

from deepaas.api.models import PREDICTION_LOG
from deepaas.provenance import artifacts, record_summary


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
async def test_every_answer_gets_a_prov_json_line(
    make_client: Any, tmp_path: Path
) -> None:
    log = tmp_path / "logs" / "provenance.jsonl"
    client = await make_client("echo", "old-style", provenance_log=str(log))
    answers = []
    for value in ("a", "b"):
        resp = await client.post("/v2/models/echo/predict/", json={"value": value})
        assert resp.status == 200
        answers.append(await resp.read())
    form = aiohttp.FormData()
    form.add_field("data", b"\x89PNG pixels", filename="cat.png",
                   content_type="image/png")  # fmt: skip
    form.add_field("mode", "slow")
    resp = await client.post("/v2/models/old-style/predict/", data=form)
    assert resp.status == 200
    answers.append(await resp.read())
    # A refused call (422) is not an answer: no record.
    resp = await client.post("/v2/models/old-style/predict/")
    assert resp.status == 422
    await client.close()  # the last records are written at shutdown

    server, *records = lines_of(log)
    assert len(records) == 3
    ((agent_id, agent),) = server["agent"].items()
    assert agent["prov:label"] == "deepaas-run"
    assert agent["deepaas:devices"].startswith("cpu")
    models = {e["prov:label"]: e for e in server["entity"].values()}
    assert models["echo"]["deepaas:entryPoint"] == "echo = tests.fake_models.misc:echo"
    assert models["old-style"]["deepaas:package"] == "deepaas_test_models"

    for record, answer in zip(records, answers, strict=True):
        prov.model.ProvDocument.deserialize(content=json.dumps(record), format="json")
        summary = record_summary(record)
        assert summary["type"] == "deepaas:Prediction"
        assert summary["startTime"] <= summary["endTime"]
        (output,) = artifacts(record, "Output")
        assert output.sha256 == hashlib.sha256(answer).hexdigest()
        assert output.size == len(answer)
        (association,) = record["wasAssociatedWith"].values()
        assert association["prov:agent"] == agent_id
    first = record_summary(records[0])
    assert first["outcome"] == "done"
    (arguments,) = [
        e
        for e in records[0]["entity"].values()
        if e["prov:type"]["$"] == "deepaas:Arguments"
    ]
    assert json.loads(arguments["prov:value"]) == {"value": "a"}
    (upload,) = artifacts(records[2], "Input")
    assert upload.name == "data"
    assert upload.sha256 == hashlib.sha256(b"\x89PNG pixels").hexdigest()
    (used,) = [
        u["prov:entity"] for u in records[2]["used"].values()
        if u["prov:entity"].endswith("/input/0")
    ]  # fmt: skip
    assert used in records[2]["entity"]


async def test_off_by_default_there_is_no_log(make_client: Any) -> None:
    client = await make_client("echo")
    assert client.app[PREDICTION_LOG] is None
    resp = await client.post("/v2/models/echo/predict/", json={"value": "x"})
    assert resp.status == 200
