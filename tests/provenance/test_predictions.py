"""The prediction log on its own: lines in order, large answers hashed too."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import prov.model
import pytest

from deepaas.model.files import UploadedFile
from deepaas.model.wrapper import PredictOutcome, RawArguments
from deepaas.provenance import PredictionLog, artifacts, model_package, record_summary
from deepaas.provenance.predictions import INLINE_BYTES

pytestmark = pytest.mark.slow


def test_small_and_large_answers_are_recorded_in_order(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = PredictionLog(path, flush_seconds=0.05)
    log.open([model_package("ghost", "ghost_module")])
    bodies = [b"small", b"L" * (INLINE_BYTES + 1), b"\xff\x00 bytes"]
    for number, body in enumerate(bodies):
        begun = asyncio.run(log.begin(RawArguments(pairs=[("n", str(number))])))
        log.record("ghost", begun, RawArguments(pairs=[("n", str(number))]),
                   PredictOutcome(body, "application/octet-stream"))  # fmt: skip
    time.sleep(0.2)  # the writer thread appends without waiting for close()
    assert len(path.read_text().splitlines()) == 1 + 3
    log.close()

    server, *records = [json.loads(line) for line in path.read_text().splitlines()]
    assert "deepaas:model/ghost" in server["entity"]
    for record, body in zip(records, bodies, strict=True):
        prov.model.ProvDocument.deserialize(content=json.dumps(record), format="json")
        (output,) = artifacts(record, "Output")
        assert output.sha256 == hashlib.sha256(body).hexdigest()
        assert output.size == len(body)
    ids = [next(iter(r["activity"])) for r in records]
    assert len(set(ids)) == 3
    assert record_summary(records[0])["startTime"].endswith("+00:00")


def test_uploads_are_hashed_before_the_call(tmp_path: Path) -> None:
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"as sent")
    raw = RawArguments(
        pairs=[("data", UploadedFile("data", str(upload), "x/y", "a.bin"))]
    )
    log = PredictionLog(tmp_path / "log.jsonl")
    log.open([])
    begun = asyncio.run(log.begin(raw))
    upload.write_bytes(b"changed by the model")
    log.record("ghost", begun, raw, PredictOutcome(b"{}"))
    log.close()
    record = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[1])
    (item,) = artifacts(record, "Input")
    assert item.sha256 == hashlib.sha256(b"as sent").hexdigest()
    (arguments,) = [
        e for e in record["entity"].values()
        if e["prov:type"]["$"] == "deepaas:Arguments"
    ]  # fmt: skip
    assert json.loads(arguments["prov:value"]) == [["data", "a.bin"]]
