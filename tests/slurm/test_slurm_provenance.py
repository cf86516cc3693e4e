"""A SLURM training's provenance record names the node and the job it ran in.

The record is written by the server when it learns from SLURM that the job
ended; the host and GPUs are the ones the job itself reported.
"""

from __future__ import annotations

import json
from typing import Any

import prov.model
import pytest

from deepaas.provenance import record_summary
from tests.slurm.test_slurm_training import TRAIN, server  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_a_slurm_training_has_a_record_naming_its_node_and_job(server: Any) -> None:  # noqa: F811
    training = server.train("seconds=0")
    server.wait_status(training, "done")
    record = server.call("GET", f"{TRAIN}{training['uuid']}/provenance")
    prov.model.ProvDocument.deserialize(content=json.dumps(record), format="json")
    summary = record_summary(record)
    assert summary["type"] == "deepaas:Training"
    assert summary["outcome"] == "done"
    assert summary["slurmJob"] == training["slurm"]["job_id"]
    assert summary["host"]  # the node SLURM ran it on
    assert summary["devices"].startswith("cpu")
