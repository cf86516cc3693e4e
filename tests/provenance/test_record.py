"""Building, writing and checking a provenance record, as a caller does.

The record is W3C PROV-JSON: the ``prov`` library reads every document
built here, and what a caller put in comes back out.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import prov.model
import pytest

from deepaas.provenance import (
    Artifact,
    artifacts,
    build_record,
    copy_with_digest,
    model_package,
    read_record,
    record_summary,
    sha256_file,
    verify_record,
    visible_devices,
    write_record,
)


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[Path]:
    """A model distribution installed with a RECORD file, as pip leaves one."""
    site = tmp_path / "site"
    (site / "tiny_model").mkdir(parents=True)
    (site / "tiny_model" / "__init__.py").write_text(
        "def predict(**kw):\n    return kw\n"
    )
    dist = site / "tiny_model-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tiny-model\nVersion: 1.2.3\n"
    )
    (dist / "entry_points.txt").write_text("[deepaas.v2.model]\ntiny = tiny_model\n")
    (dist / "RECORD").write_text("tiny_model/__init__.py,sha256=abc,40\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield dist
    finally:
        sys.path.remove(str(site))
        importlib.invalidate_caches()


def test_the_model_package_is_found_by_its_entry_point_with_a_digest_of_record(
    installed: Path,
) -> None:
    package = model_package("tiny", "tiny_model", model_version="7")
    assert package.entry_point == "tiny = tiny_model"
    assert package.package == "tiny-model"
    assert package.package_version == "1.2.3"
    record_bytes = (installed / "RECORD").read_bytes()
    assert package.files_sha256 == hashlib.sha256(record_bytes).hexdigest()
    assert package.model_version == "7"


def test_a_model_from_no_known_distribution_is_still_named() -> None:
    package = model_package("ghost", "no_such_module_anywhere:Model")
    assert package.entry_point == "ghost = no_such_module_anywhere:Model"
    assert package.package is None and package.files_sha256 is None


def record_for(tmp_path: Path, installed: Path) -> dict:
    data = tmp_path / "image.png"
    data.write_bytes(b"\x89PNG fake")
    return build_record(
        kind="job",
        activity_id="0123abcd",
        model=model_package("tiny", "tiny_model"),
        arguments={"threshold": 0.5, "labels": ["cat", "dog"]},
        inputs=[Artifact("image.png", sha256_file(data), 9, str(data))],
        outputs=[Artifact("answer", hashlib.sha256(b"{}").hexdigest(), 2)],
        started=1_700_000_000.0,
        ended=1_700_000_002.5,
        outcome="done",
        devices=["cpu", "gpu:0"],
    )


def test_a_record_is_prov_json_the_prov_library_reads(
    tmp_path: Path, installed: Path
) -> None:
    record = record_for(tmp_path, installed)
    document = prov.model.ProvDocument.deserialize(
        content=json.dumps(record), format="json"
    )
    provn = document.get_provn()
    assert "activity(deepaas:job/0123abcd, 2023-11-14T22:13:20+00:00" in provn
    assert "used(deepaas:job/0123abcd, deepaas:job/0123abcd/input/0, -)" in provn
    assert (
        "wasGeneratedBy(deepaas:job/0123abcd/output/0, deepaas:job/0123abcd, -)"
        in provn
    )
    assert "wasAssociatedWith(deepaas:job/0123abcd, deepaas:software/" in provn
    summary = record_summary(record)
    assert summary["type"] == "deepaas:PredictJob"
    assert summary["outcome"] == "done"
    assert summary["devices"] == "cpu,gpu:0"
    assert summary["endTime"] == "2023-11-14T22:13:22.500000+00:00"


def test_write_then_read_gives_the_record_back_and_leaves_no_temporary_file(
    tmp_path: Path, installed: Path
) -> None:
    record = record_for(tmp_path, installed)
    path = tmp_path / "provenance.json"
    write_record(path, record)
    assert read_record(path) == record
    assert not list(tmp_path.glob(".provenance.json.*"))


def test_reading_something_else_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "provenance.json"
    path.write_text('{"not": "prov"}')
    with pytest.raises(ValueError, match="provenance.json is not a PROV-JSON"):
        read_record(path)
    path.write_text("{broken")
    with pytest.raises(ValueError, match="is not a JSON provenance record"):
        read_record(path)


def test_unknown_kind_or_outcome_is_refused(tmp_path: Path) -> None:
    common = dict(
        activity_id="x",
        model=model_package("ghost", "ghost"),
        arguments={},
        started=0.0,
        ended=1.0,
    )
    with pytest.raises(ValueError, match="kind must be one of"):
        build_record(kind="lunch", outcome="done", **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outcome must be one of .* \\(got 'fine'\\)"):
        build_record(kind="job", outcome="fine", **common)  # type: ignore[arg-type]


def test_verify_names_each_altered_or_missing_input(
    tmp_path: Path, installed: Path
) -> None:
    record = record_for(tmp_path, installed)
    assert verify_record(record) == []
    (tmp_path / "image.png").write_bytes(b"\x89PNG edit")
    (problem,) = verify_record(record)
    assert problem.startswith("input 'image.png' was altered: ")
    (tmp_path / "image.png").unlink()
    assert verify_record(record) == [
        f"input 'image.png' is missing: {tmp_path / 'image.png'} does not exist"
    ]
    assert [a.name for a in artifacts(record, "Output")] == ["answer"]


def test_copy_with_digest_copies_and_hashes_in_one_read(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(bytes(range(256)) * 10_000)
    digest = copy_with_digest(source, tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == source.read_bytes()
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("environ", "devices"),
    [
        ({}, ["cpu"]),
        ({"CUDA_VISIBLE_DEVICES": ""}, ["cpu"]),
        ({"CUDA_VISIBLE_DEVICES": "0,2"}, ["cpu", "gpu:0", "gpu:2"]),
        ({"CUDA_VISIBLE_DEVICES": "GPU-1a2b"}, ["cpu", "gpu:GPU-1a2b"]),
        ({"SLURM_JOB_GPUS": "3"}, ["cpu", "gpu:3"]),
        ({"CUDA_VISIBLE_DEVICES": "-1", "SLURM_JOB_GPUS": "3"}, ["cpu"]),
    ],
)
def test_devices_are_read_from_the_environment(
    environ: dict[str, str], devices: list[str]
) -> None:
    assert visible_devices(environ) == devices
