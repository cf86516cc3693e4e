"""Every batch run leaves a provenance record beside ``run.json``.

``OUTPUT_DIR/provenance.json`` is a W3C PROV-JSON document that the
``prov`` library reads: the model's package and version, the arguments,
a SHA-256 of every input and every answer, the times, host and devices,
and the outcome.  Merge rewrites it with the final outcome, and
``deepaas-predict --verify`` says whether the inputs still match it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import prov.model
import pytest

from deepaas.cmd.predict import main
from deepaas.provenance import artifacts, read_record, record_summary


def predict(*args: object) -> int:
    return main([str(a) for a in args])


def make_inputs(folder: Path, texts: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, text in enumerate(texts):
        path = folder / f"in_{number:02d}.txt"
        path.write_text(text)
        paths.append(path)
    return paths


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entities_of(record: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [
        attributes
        for attributes in record["entity"].values()
        if attributes["prov:type"]["$"] == f"deepaas:{kind}"
    ]


@pytest.mark.slow
def test_a_batch_run_writes_a_prov_json_record_the_prov_library_reads(
    installed_models: Path, tmp_path: Path
) -> None:
    paths = make_inputs(tmp_path / "data", ["a", "bb", "ccc", "fail here"])
    out = tmp_path / "out"
    code = predict(
        tmp_path / "data", "-o", out, "--model-name", "batch-reader",
        "--arg", "scale=2", "--workers", "2",
    )  # fmt: skip
    assert code == 1  # one input failed

    record = read_record(out / "provenance.json")
    document = prov.model.ProvDocument.deserialize(
        content=json.dumps(record), format="json"
    )
    # The library understood every statement: an activity, its agent, the
    # model and arguments it used, each input used and each answer generated.
    kinds = [type(r).__name__ for r in document.get_records()]
    assert kinds.count("ProvActivity") == 1
    assert kinds.count("ProvAgent") == 1
    assert kinds.count("ProvUsage") == 2 + 4
    assert kinds.count("ProvGeneration") == 3
    assert kinds.count("ProvAssociation") == 1
    # What it says survives a round trip through the library.
    again = prov.model.ProvDocument.deserialize(
        content=document.serialize(format="json"), format="json"
    )
    assert again == document

    summary = record_summary(record)
    run = json.loads((out / "run.json").read_text())
    assert summary["type"] == "deepaas:BatchRun"
    assert summary["run"] == run["run"]
    assert summary["outcome"] == "partial"
    assert (summary["ok"], summary["failed"], summary["missing"]) == (3, 1, 0)
    assert summary["startTime"] <= summary["endTime"]
    assert summary["devices"].startswith("cpu")
    assert summary["host"]

    (model,) = entities_of(record, "Model")
    assert model["deepaas:entryPoint"] == (
        "batch-reader = tests.fake_models.batch:Reader"
    )
    assert model["deepaas:package"] == "deepaas_test_models"
    assert model["deepaas:packageVersion"] == "0.0.1"
    (arguments,) = entities_of(record, "Arguments")
    assert json.loads(arguments["prov:value"])["args"] == {"scale": ["2"]}
    agent = next(iter(record["agent"].values()))
    assert agent["prov:type"]["$"] == "prov:SoftwareAgent"

    # Each input by path with the SHA-256 of its bytes.
    inputs = {item.path: item.sha256 for item in artifacts(record, "Input")}
    assert inputs == {str(p): sha256(p.read_bytes()) for p in paths}
    # Each answer's SHA-256 is that of the model's JSON answer, the bytes
    # embedded as they are at the end of its results line.
    outputs = {item.name: item.sha256 for item in artifacts(record, "Output")}
    assert len(outputs) == 3
    for line in (out / "results.jsonl").read_bytes().splitlines():
        if b'"status": "ok"' in line:
            key = json.loads(line)["input"]
            answer = line.split(b'}, "output": ', 1)[1][:-1]
            assert outputs[f"answer to {key}"] == sha256(answer)


def test_merge_rewrites_the_record_with_the_final_outcome(
    installed_models: Path, tmp_path: Path
) -> None:
    make_inputs(tmp_path / "data", ["a", "bb", "ccc", "dddd"])
    out = tmp_path / "out"
    base = [tmp_path / "data", "-o", out, "--model-name", "batch-reader"]
    assert predict(*base, "--shard", "0/2", "--workers", "0") == 0
    summary = record_summary(read_record(out / "provenance.json"))
    assert (summary["ok"], summary["missing"], summary["outcome"]) == (2, 2, "partial")
    assert predict(*base, "--shard", "1/2", "--workers", "0") == 0
    assert predict("merge", "-o", out) == 0
    record = read_record(out / "provenance.json")
    summary = record_summary(record)
    assert summary["merged"] is True
    assert (summary["ok"], summary["missing"], summary["outcome"]) == (4, 0, "done")
    assert len(artifacts(record, "Input")) == 4
    assert entities_of(record, "Model")[0]["deepaas:package"] == ("deepaas_test_models")


def test_non_json_answers_are_recorded_by_their_files(
    installed_models: Path, tmp_path: Path
) -> None:
    make_inputs(tmp_path / "data", ["a", "bb"])
    out = tmp_path / "out"
    code = predict(
        tmp_path / "data", "-o", out, "--model-name", "batch-reader",
        "--accept", "text/plain", "--workers", "0",
    )  # fmt: skip
    assert code == 0
    outputs = artifacts(read_record(out / "provenance.json"), "Output")
    assert len(outputs) == 2
    for item in outputs:
        assert item.path and item.path.startswith("outputs/")
        assert sha256((out / item.path).read_bytes()) == item.sha256


@pytest.mark.slow
def test_verify_says_a_folder_matches_its_inputs_and_names_an_altered_one(
    installed_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = make_inputs(tmp_path / "data", ["a", "bb", "ccc"])
    out = tmp_path / "out"
    assert predict(tmp_path / "data", "-o", out, "--model-name", "batch-reader") == 0
    capsys.readouterr()

    assert predict("--verify", "-o", out) == 0
    assert "matches its inputs" in capsys.readouterr().err

    paths[1].write_text("BB")  # same size, other bytes
    paths[2].unlink()
    assert predict("--verify", "-o", out) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"deepaas-predict: input '{paths[1]}' was altered:")
    assert lines[1] == (
        f"deepaas-predict: input '{paths[2]}' is missing: {paths[2]} does not exist"
    )
    assert "does not match its inputs: 2 problem(s)" in lines[2]


def test_verify_checks_json_lines_inputs_line_by_line(
    installed_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = tmp_path / "args.jsonl"
    lines.write_text('{"a": 1}\n{"a": 2, "b": 4}\n{"a": 9}\n')
    out = tmp_path / "out"
    code = predict(
        "--input-jsonl", lines, "-o", out, "--model-name", "batch-divide",
        "--workers", "0",
    )  # fmt: skip
    assert code == 0
    inputs = artifacts(read_record(out / "provenance.json"), "Input")
    assert [(i.line, i.sha256) for i in inputs] == [
        (1, sha256(b'{"a": 1}\n')),
        (2, sha256(b'{"a": 2, "b": 4}\n')),
        (3, sha256(b'{"a": 9}\n')),
    ]
    assert predict("--verify", "-o", out) == 0
    lines.write_text('{"a": 1}\n{"a": 3, "b": 4}\n{"a": 9}\n')
    capsys.readouterr()
    assert predict("--verify", "-o", out) == 1
    (problem, _) = capsys.readouterr().err.strip().splitlines()
    assert f"input '{lines}:2' was altered: {lines} line 2 has SHA-256" in problem


def test_verify_without_a_record_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert predict("--verify", "-o", tmp_path) == 2
    err = capsys.readouterr().err
    assert "provenance.json does not exist" in err
    assert len(err.strip().splitlines()) == 1
