"""Do the files a record lists still hold what the activity read and wrote?

Each input the record names by path is read again and its SHA-256
compared with the recorded one (a JSON Lines input: its line); outputs
with a path are checked the same way.  Every problem is one line naming
the file: altered (another digest), missing (no file there any more) or
unreadable; an empty list means the results still match their inputs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepaas.provenance.digests import sha256_file
from deepaas.provenance.record import Artifact, artifacts


def verify_record(
    record: Mapping[str, Any],
    *,
    base: str | os.PathLike[str] | None = None,
    outputs: bool = True,
) -> list[str]:
    """One line per input (and output) of ``record`` that no longer matches.

    A relative path is taken from ``base`` (the folder the record lies in);
    an item recorded without a path cannot be checked and is skipped (the
    answers embedded in a results file, for instance).  [] when all match.
    """
    lines: dict[str, list[str] | None] = {}
    problems = []
    roles = ("Input", "Output") if outputs else ("Input",)
    for role in roles:
        for item in artifacts(record, role):
            if not item.path or not item.sha256:
                continue
            path = Path(item.path)
            if not path.is_absolute() and base is not None:
                path = Path(base) / path
            problem = _check(role.lower(), item, path, lines)
            if problem:
                problems.append(problem)
    return problems


def _check(
    role: str, item: Artifact, path: Path, lines: dict[str, list[str] | None]
) -> str | None:
    name = item.name
    try:
        if item.line is None:
            digest = sha256_file(path)
        else:
            digest = _line_digest(path, item.line, lines)
    except FileNotFoundError:
        return f"{role} {name!r} is missing: {path} does not exist"
    except IndexError:
        return f"{role} {name!r} is missing: {path} has no line {item.line}"
    except OSError as exc:
        return f"{role} {name!r} cannot be read: {path}: {exc.strerror or exc}"
    if digest != item.sha256:
        where = str(path) if item.line is None else f"{path} line {item.line}"
        return (
            f"{role} {name!r} was altered: {where} has SHA-256 {digest[:16]}..., "
            f"the record says {item.sha256[:16]}..."
        )
    return None


def _line_digest(path: Path, number: int, cache: dict[str, list[str] | None]) -> str:
    """The SHA-256 of line ``number`` (from 1) as deepaas-predict read it."""
    key = str(path)
    if key not in cache:
        # Read as the batch reads a JSON Lines input (UTF-8, bad bytes
        # replaced), once per file however many of its lines are checked.
        with open(path, encoding="utf-8", errors="replace") as handle:
            cache[key] = list(handle)
    found = cache[key]
    if found is None or not 1 <= number <= len(found):
        raise IndexError(number)
    return hashlib.sha256(found[number - 1].encode()).hexdigest()


__all__ = ["verify_record"]
