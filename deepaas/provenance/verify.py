"""Do the inputs a record lists still hold what the activity read?

Each input the record names by path is read again and its SHA-256
compared with the recorded one.  Every problem is one line naming the
input: altered (another digest), missing (no file there any more) or
unreadable; an empty list means the results still match their inputs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepaas.provenance.digests import sha256_file
from deepaas.provenance.record import artifacts


def verify_inputs(
    record: Mapping[str, Any], *, base: str | os.PathLike[str] | None = None
) -> list[str]:
    """One line per input of ``record`` that no longer matches; [] when all do.

    An input recorded without a path is looked up as its name under
    ``base`` (when given); one with neither cannot be checked and is named.
    """
    problems = []
    for item in artifacts(record, "Input"):
        if item.path:
            path = Path(item.path)
        elif base is not None:
            path = Path(base) / item.name
        else:
            problems.append(f"input {item.name!r}: no path recorded, cannot check it")
            continue
        try:
            digest = sha256_file(path)
        except FileNotFoundError:
            problems.append(f"input {item.name!r} is missing: {path} does not exist")
            continue
        except OSError as exc:
            problems.append(
                f"input {item.name!r} cannot be read: {path}: {exc.strerror or exc}"
            )
            continue
        if digest != item.sha256:
            problems.append(
                f"input {item.name!r} was altered: {path} has SHA-256 "
                f"{digest}, the record says {item.sha256}"
            )
    return problems


__all__ = ["verify_inputs"]
