"""The copies of a run's input files that the model gets, never the files.

The contract lets a model move, truncate or delete the file it is given, so
each input's files are copied (a reflink where the filesystem can, see
:func:`deepaas.model.files.copy_for_model`) into one temporary folder of
the run just before the input is handed out, and removed as soon as the
input's record is written (or when the input is handed out again); this
process does both, so that a worker spends its time on the model alone.
The folder goes, with anything left in it, when the run ends; the folder
of a run whose batch process was killed outright (SIGKILL) is removed by
the next run on the same host.
"""

from __future__ import annotations

import contextlib
import os
import shutil

from deepaas.exceptions import DeepaasError
from deepaas.model.files import can_reflink, copy_for_model, owned_temp_folder


class InputUnreadable(DeepaasError):
    """An input that cannot be handed to the model (missing file, bad line)."""


class InputCopies:
    """The temporary folder of one run and the copies in it, by input."""

    def __init__(self) -> None:
        self.directory = ""
        self._made = 0
        #: Input key -> its copies.
        self._by_input: dict[str, list[str]] = {}
        #: Input folder -> whether its files can be reflinked here.
        self._reflinks: dict[str, bool] = {}

    def __enter__(self) -> InputCopies:
        self.directory = owned_temp_folder("predict")
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self._by_input.clear()

    def __contains__(self, key: str) -> bool:
        return key in self._by_input

    def copy(self, key: str, path: str) -> str:
        """A new copy of ``path`` for input ``key``; returns its path."""
        self._made += 1
        folder = os.path.dirname(path)
        reflink = self._reflinks.get(folder)
        try:
            if reflink is None:
                reflink = self._reflinks[folder] = can_reflink(path, self.directory)
            copied = copy_for_model(
                path, self.directory, str(self._made), reflink=reflink
            )
        except OSError as exc:
            if exc.filename == path:
                raise InputUnreadable(
                    f"input file {path!r} cannot be read: {exc.strerror or exc}"
                ) from None
            raise DeepaasError(
                f"cannot copy input {path!r} into the temporary folder "
                f"{self.directory}: {exc.strerror or exc} (set TMPDIR to a folder "
                "with room)"
            ) from None
        self._by_input.setdefault(key, []).append(copied)
        return copied

    def drop(self, key: str) -> None:
        """Remove input ``key``'s copies (the model may have done it already)."""
        for path in self._by_input.pop(key, ()):
            with contextlib.suppress(OSError):
                os.unlink(path)
