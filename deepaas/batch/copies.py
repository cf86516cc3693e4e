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

A model may also empty its temporary folder, or ``$TMPDIR`` itself, and
with it the copies made ahead for the next inputs: the folder is made again
for the next copy, and a worker makes an input's copy again
(:func:`restore`) when it is gone by the time the input's turn comes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any

from deepaas.exceptions import DeepaasError
from deepaas.model.files import can_reflink, copy_for_model, owned_temp_folder
from deepaas.provenance.digests import sha256_file

#: Tries at a copy whose folder a model keeps removing.
_ATTEMPTS = 3


class InputUnreadable(DeepaasError):
    """An input that cannot be handed to the model (missing file, bad line)."""


class InputCopies:
    """The temporary folder of one run and the copies in it, by input."""

    def __init__(self) -> None:
        self.directory = ""
        self._made = 0
        #: Input key -> its copies, as (copy, original) pairs.
        self._by_input: dict[str, list[tuple[str, str]]] = {}
        #: Input key -> the bytes of its copies.
        self._sizes: dict[str, int] = {}
        #: Input folder -> whether its files can be reflinked here.
        self._reflinks: dict[str, bool] = {}

    def __enter__(self) -> InputCopies:
        self.directory = owned_temp_folder("predict")
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self._by_input.clear()
        self._sizes.clear()

    def __contains__(self, key: str) -> bool:
        return key in self._by_input

    def copy(self, key: str, path: str) -> str:
        """A new copy of ``path`` for input ``key``; returns its path."""
        self._made += 1
        try:
            size = os.stat(path).st_size
            for attempt in range(_ATTEMPTS):
                try:
                    copied = self._copy(path)
                    break
                except FileNotFoundError as exc:
                    if exc.filename == path or attempt == _ATTEMPTS - 1:
                        raise
                    # A model emptied $TMPDIR, or removed the folder of its
                    # copy (maybe while this copy was being made).
                    os.makedirs(self.directory, mode=0o700, exist_ok=True)
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
        self._by_input.setdefault(key, []).append((copied, path))
        self._sizes[key] = self._sizes.get(key, 0) + size
        return copied

    def _copy(self, path: str) -> str:
        folder = os.path.dirname(path)
        reflink = self._reflinks.get(folder)
        if reflink is None:
            reflink = self._reflinks[folder] = can_reflink(path, self.directory)
        return copy_for_model(path, self.directory, str(self._made), reflink=reflink)

    def of(self, key: str) -> list[tuple[str, str]]:
        """Input ``key``'s copies, as ``(copy, original)`` pairs."""
        return list(self._by_input.get(key, ()))

    def size(self, key: str) -> int:
        """The bytes of input ``key``'s copies."""
        return self._sizes.get(key, 0)

    def drop(self, key: str) -> None:
        """Remove input ``key``'s copies (the model may have done it already)."""
        self._sizes.pop(key, None)
        for path, _ in self._by_input.pop(key, ()):
            with contextlib.suppress(OSError):
                os.unlink(path)


def restore(copies: list[tuple[str, str]]) -> None:
    """Make again, from the originals, those of ``copies`` that are gone.

    A worker calls it just before an input's turn: the copies were made
    ahead by the batch process, and the model's previous call may have
    removed them (emptying its temporary folder).  One ``stat`` per copy
    when nothing is missing.
    """
    for copied, original in copies:
        if os.path.exists(copied):
            continue
        os.makedirs(os.path.dirname(copied), mode=0o700, exist_ok=True)
        try:
            shutil.copyfile(original, copied)
        except OSError as exc:
            raise InputUnreadable(
                f"the copy of {original!r} was removed before the model's call "
                f"and cannot be made again: {exc.strerror or exc}"
            ) from None


def digests_of(copies: list[tuple[str, str]]) -> dict[str, Any]:
    """The SHA-256 of each of an input's files, read from its copies.

    ``{"files": {original path: digest}}``: the copy holds the original's
    bytes (it was just made, so it is read from the page cache), and it is
    read before the model's call, which may change or remove it.
    """
    if not copies:
        return {}
    return {"files": {original: sha256_file(copied) for copied, original in copies}}
