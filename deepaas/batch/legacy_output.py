"""The file DEEPaaS 2.x's ``deepaas-predict -i FILE -o DIR`` left in DIR.

2.x predicted one file and wrote its answer to ``DIR/out_<name>.json``
(``<name>``: the input's file name without its extension).  Scripts written
for it read that file, so a run given one input file with ``-i`` writes it
too, beside the results file, from the input's recorded answer.  2.x wrote
Python's ``repr`` of the answer there; this is JSON, which such scripts
parse as well when the answer is made of dicts, lists, strings and numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from deepaas.batch.results import read_records, results_files

__all__ = ["legacy_output_name", "write_legacy_output"]


def legacy_output_name(input_path: str) -> str:
    """``out_<name>.json`` for ``input_path``, as 2.x named it."""
    stem = os.path.splitext(os.path.basename(input_path))[0]
    return f"out_{stem}.json"


def write_legacy_output(output_dir: Path, input_path: str) -> Path | None:
    """Write the JSON answer to ``input_path`` as ``output_dir/out_<name>.json``.

    The latest successful record of the input is used.  Returns the path,
    or None when the input has no JSON answer (it failed, or its answer is
    a file under ``outputs/``).  The file is replaced atomically.
    """
    key = os.path.abspath(input_path)
    answer: object = None
    found = False
    for results in results_files(output_dir):
        for _, record in read_records(results):
            if record["input"] == key and record["status"] == "ok":
                found = "output" in record
                answer = record.get("output")
    if not found:
        return None
    target = output_dir / legacy_output_name(input_path)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        partial.write_text(json.dumps(answer) + "\n")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target
