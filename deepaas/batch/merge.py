"""Combining the results files of every task into one, in input order.

``deepaas-predict merge`` re-lists the inputs (as recorded in ``run.json``,
or as given again on its command line), picks for each input its best
record from every results file of the folder (an ``ok`` record over an
error, the latest of several errors), writes them in input order to
``merged.jsonl`` and lists the inputs no task recorded in ``missing.txt``
(written only when some are missing).  Only the records of the run
recorded in ``run.json`` count.  Only the keys and file offsets of the
records are held in memory.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from deepaas.batch.inputs import InputError, Inputs, JsonlInputs, collect_files
from deepaas.batch.results import (
    MERGED_FILE,
    MISSING_FILE,
    RUN_FILE,
    read_records,
    results_files,
)
from deepaas.batch.sharding import Shard


@dataclasses.dataclass
class MergeReport:
    """What a merge found."""

    inputs: int = 0
    ok: int = 0
    failed: int = 0
    missing: list[str] = dataclasses.field(default_factory=list)
    unknown: int = 0
    files: int = 0
    merged_file: str = ""

    @property
    def exit_code(self) -> int:
        return 0 if self.ok == self.inputs else 1

    def line(self) -> str:
        text = (
            f"merged {self.files} results file(s) into {self.merged_file}: "
            f"{self.inputs} inputs, {self.ok} ok, {self.failed} failed, "
            f"{len(self.missing)} missing"
        )
        if self.missing:
            text += f" (listed in {Path(self.merged_file).parent / MISSING_FILE})"
        if self.unknown:
            text += f"; ignored records of {self.unknown} input(s) not in the list"
        return text


def inputs_from_run_file(output_dir: Path) -> Inputs:
    """The inputs of the run that wrote ``run.json`` in ``output_dir``."""
    path = output_dir / RUN_FILE
    try:
        run = json.loads(path.read_text())
        given = run["inputs"]
    except FileNotFoundError:
        raise InputError(
            f"{path} does not exist: run deepaas-predict with this --output-dir "
            "first, or give the inputs to merge on its command line"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if given.get("kind") == "jsonl":
        return JsonlInputs(given["path"])
    return collect_files(
        given["sources"],
        patterns=given.get("patterns") or ["*"],
        exclude_dirs=[str(output_dir)],
    )


def merge_results(
    output_dir: Path, inputs: Inputs, *, run: str | None = None
) -> MergeReport:
    """Write ``merged.jsonl`` (and ``missing.txt``); see the module docstring.

    With ``run``, only that run's records count; without, every record (a
    folder written before runs had ids).
    """
    report = MergeReport(merged_file=str(output_dir / MERGED_FILE))
    files = results_files(output_dir)
    report.files = len(files)
    # key -> (rank, file number, offset); rank orders ok above errors, then time.
    best: dict[str, tuple[tuple[bool, str], int, int]] = {}
    for number, path in enumerate(files):
        for offset, record in read_records(path):
            if run is not None and record.get("run") != run:
                continue
            ok = record["status"] == "ok"
            if ok and record.get("output_file"):
                ok = (output_dir / record["output_file"]).is_file()
                if not ok:
                    continue
            rank = (ok, str(record.get("finished", "")))
            key = record["input"]
            if key not in best or rank >= best[key][0]:
                best[key] = (rank, number, offset)
    handles = [open(path, "rb") for path in files]
    merged = output_dir / MERGED_FILE
    partial = output_dir / f".{MERGED_FILE}.{os.getpid()}.part"
    try:
        with open(partial, "wb") as out:
            for key in inputs.keys(Shard()):
                report.inputs += 1
                found = best.pop(key, None)
                if found is None:
                    report.missing.append(key)
                    continue
                (ok, _), number, offset = found
                handle = handles[number]
                handle.seek(offset)
                out.write(handle.readline())
                if ok:
                    report.ok += 1
                else:
                    report.failed += 1
        os.replace(partial, merged)
    finally:
        for handle in handles:
            handle.close()
        if partial.exists():
            partial.unlink()
    report.unknown = len(best)
    missing_path = output_dir / MISSING_FILE
    if report.missing:
        missing_path.write_text("".join(f"{key}\n" for key in report.missing))
    elif missing_path.exists():
        missing_path.unlink()
    return report
