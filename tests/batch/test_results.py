"""Results files: whole records only, resume state, merge in input order."""

from __future__ import annotations

import json
from pathlib import Path

from deepaas.batch import FileInputs, ResultsWriter, merge_results, read_records
from deepaas.batch.results import error_record, load_state, ok_record


def test_records_are_whole_lines_and_embed_the_json_answer(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    with ResultsWriter(path) as writer:
        writer.write(ok_record('/in/"quoted".txt', 0.5, json_body=b'{"x": [1, 2]}'))
        writer.write(
            error_record(
                "/in/b", 0.1, "ModelError", "boom\nline two", details={"a": ["bad"]}
            )
        )
    records = [r for _, r in read_records(path)]
    assert records[0]["input"] == '/in/"quoted".txt'
    assert records[0]["output"] == {"x": [1, 2]}
    assert records[1]["error"] == "boom\nline two"
    assert records[1]["details"] == {"a": ["bad"]}
    assert path.read_text().count("\n") == 2


def test_a_truncated_last_line_is_ignored_then_terminated(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(ok_record("/in/a", 1, json_body=b"1") + b'{"input": "/in/b", "sta')
    assert [r["input"] for _, r in read_records(path)] == ["/in/a"]
    with ResultsWriter(path) as writer:
        writer.write(ok_record("/in/c", 1, json_body=b"3"))
    assert [r["input"] for _, r in read_records(path)] == ["/in/a", "/in/c"]


def test_state_prefers_ok_and_forgets_ok_records_whose_file_is_gone(
    tmp_path: Path,
) -> None:
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "kept.txt").write_text("x")
    with ResultsWriter(tmp_path / "results-0000-of-0002.jsonl") as writer:
        writer.write(error_record("/in/a", 0, "ModelError", "first try", run="r1"))
        writer.write(
            ok_record(
                "/in/b",
                0,
                run="r1",
                output_file="outputs/gone.txt",
                content_type="text/plain",
            )
        )
        writer.write(
            ok_record(
                "/in/c",
                0,
                run="r1",
                output_file="outputs/kept.txt",
                content_type="text/plain",
            )
        )
    with ResultsWriter(tmp_path / "results-0001-of-0002.jsonl") as writer:
        writer.write(ok_record("/in/a", 0, run="r1", json_body=b"1"))
        writer.write(error_record("/in/d", 0, "ModelError", "no", run="r1"))
        # another run's records, and one from before runs had ids: not counted
        writer.write(ok_record("/in/d", 0, run="r0", json_body=b"1"))
        writer.write(ok_record("/in/e", 0, run="r0", json_body=b"1"))
        writer.write(ok_record("/in/f", 0, json_body=b"1"))
    assert load_state(tmp_path, "r1") == {"/in/a": True, "/in/c": True, "/in/d": False}
    assert load_state(tmp_path, "r0") == {"/in/d": True, "/in/e": True}


def test_merge_writes_one_record_per_input_in_order_and_lists_missing(
    tmp_path: Path,
) -> None:
    with ResultsWriter(tmp_path / "results-0000-of-0002.jsonl") as writer:
        writer.write(error_record("/in/c", 0, "ModelError", "first try"))
        writer.write(ok_record("/in/a", 0, json_body=b'"a"'))
        writer.write(ok_record("/elsewhere", 0, json_body=b'"?"'))
    with ResultsWriter(tmp_path / "results-0001-of-0002.jsonl") as writer:
        writer.write(ok_record("/in/c", 0, json_body=b'"c"'))
        writer.write(error_record("/in/d", 0, "ModelError", "old"))
        writer.write(error_record("/in/d", 0, "ModelError", "new"))
    report = merge_results(tmp_path, FileInputs(["/in/a", "/in/b", "/in/c", "/in/d"]))
    merged = [json.loads(line) for line in (tmp_path / "merged.jsonl").open()]
    assert [r["input"] for r in merged] == ["/in/a", "/in/c", "/in/d"]
    assert merged[1]["output"] == "c" and merged[2]["error"] == "new"
    assert (report.ok, report.failed, report.missing, report.unknown) == (
        2,
        1,
        ["/in/b"],
        1,
    )
    assert (tmp_path / "missing.txt").read_text() == "/in/b\n"
    assert report.exit_code == 1
    assert not list(tmp_path.glob(".*part"))
    # with a run id, only that run's records count; nothing missing, no list
    with ResultsWriter(tmp_path / "results-0002-of-0002.jsonl") as writer:
        writer.write(ok_record("/in/b", 0, run="r9", json_body=b'"b"'))
    report = merge_results(tmp_path, FileInputs(["/in/b"]), run="r9")
    assert (report.ok, report.missing, report.unknown) == (1, [], 0)
    assert not (tmp_path / "missing.txt").exists()
    report = merge_results(tmp_path, FileInputs(["/in/a", "/in/b"]), run="r9")
    assert report.missing == ["/in/a"]
