"""Finding the inputs of a batch run and handing them out shard by shard.

Two kinds of input exist:

* **files** (``deepaas-predict data/ '*.wav' @list.txt``): every source is
  expanded (directories recursively, filtered by ``--pattern``; globs;
  ``@file`` lists of sources, one a line) into a sorted list of absolute
  paths.  Only the paths are held in memory, never the contents.
* **JSON Lines** (``--input-jsonl args.jsonl``): each non-blank line is one
  set of predict arguments; lines are read lazily, one at a time.

Each input has a stable ``key`` (its absolute path, or ``<file>:<line>``)
that identifies it in the results files, and a ``position`` in the sorted
order that decides its shard.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import os
import re
from collections.abc import Iterable, Iterator, Sequence

from deepaas.batch.sharding import Shard

_GLOB_CHARS = re.compile(r"[*?[]")


class InputError(ValueError):
    """Inputs that cannot be found or read, with a message for the user."""


@dataclasses.dataclass(frozen=True)
class InputItem:
    """One input: a file, or one line of a JSON Lines file."""

    key: str
    position: int
    path: str | None = None
    line: int | None = None
    #: The raw text of a JSON Lines input (read only when it is handed out).
    text: str | None = None

    @property
    def label(self) -> str:
        """A short, readable name for file names and logs."""
        if self.line is not None and self.path is not None:
            stem = os.path.splitext(os.path.basename(self.path))[0]
            return f"{stem}-line{self.line}"
        return os.path.basename(self.key)


class FileInputs:
    """A sorted list of input files."""

    kind = "files"

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def keys(self, shard: Shard) -> Iterator[str]:
        """Keys of this shard's inputs, in order."""
        return iter(self.paths[shard.index :: shard.count])

    def items(self, shard: Shard) -> Iterator[InputItem]:
        """This shard's inputs, in order."""
        for position in range(shard.index, len(self.paths), shard.count):
            path = self.paths[position]
            yield InputItem(key=path, position=position, path=path)


class JsonlInputs:
    """The lines of a JSON Lines file, each one set of predict arguments."""

    kind = "jsonl"

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        if not os.path.isfile(self.path):
            raise InputError(f"--input-jsonl file {path!r} does not exist")
        if not os.access(self.path, os.R_OK):
            raise InputError(f"--input-jsonl file {path!r} is not readable")
        self._count: int | None = None

    def _lines(self) -> Iterator[tuple[int, str]]:
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for number, text in enumerate(handle, start=1):
                if text.strip():
                    yield number, text

    def __len__(self) -> int:
        if self._count is None:
            self._count = sum(1 for _ in self._lines())
        return self._count

    def key_of(self, line: int) -> str:
        return f"{self.path}:{line}"

    def keys(self, shard: Shard) -> Iterator[str]:
        for number, _ in self._lines():
            if shard.contains(number - 1):
                yield self.key_of(number)

    def items(self, shard: Shard) -> Iterator[InputItem]:
        for number, text in self._lines():
            if shard.contains(number - 1):
                yield InputItem(
                    key=self.key_of(number),
                    position=number - 1,
                    path=self.path,
                    line=number,
                    text=text,
                )


Inputs = FileInputs | JsonlInputs


def _expand_lists(sources: Iterable[str]) -> Iterator[str]:
    """Replace every ``@file`` by the sources listed in it."""
    for source in sources:
        if not source.startswith("@") or os.path.exists(source):
            yield source
            continue
        list_path = source[1:]
        try:
            with open(list_path, encoding="utf-8") as handle:
                for line in handle:
                    entry = line.strip()
                    if entry and not entry.startswith("#"):
                        yield entry
        except OSError as exc:
            raise InputError(
                f"cannot read the input list {list_path!r}: {exc.strerror or exc}"
            ) from None


def _walk(directory: str, patterns: Sequence[str], skip: set[str]) -> Iterator[str]:
    for root, dirs, files in os.walk(directory):
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".")
            and os.path.realpath(os.path.join(root, d)) not in skip
        ]
        for name in files:
            if name.startswith("."):
                continue
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                yield os.path.join(root, name)


def collect_files(
    sources: Sequence[str],
    *,
    patterns: Sequence[str] = ("*",),
    exclude_dirs: Sequence[str] = (),
) -> FileInputs:
    """Expand ``sources`` into the sorted, de-duplicated list of input files.

    Directories are walked recursively; hidden files and folders (names
    starting with ``.``) and the folders in ``exclude_dirs`` (the output
    folder) are skipped.  ``patterns`` filter the files found in directories;
    files named explicitly or by a glob are always taken.
    """
    skip = {os.path.realpath(d) for d in exclude_dirs}
    found: set[str] = set()
    for source in _expand_lists(sources):
        if os.path.isdir(source):
            found.update(os.path.abspath(p) for p in _walk(source, patterns, skip))
        elif os.path.exists(source):
            found.add(os.path.abspath(source))
        elif _GLOB_CHARS.search(source):
            matches = glob.glob(source, recursive=True)
            if not matches:
                raise InputError(f"no file matches the input pattern {source!r}")
            for match in matches:
                if os.path.isdir(match):
                    found.update(
                        os.path.abspath(p) for p in _walk(match, patterns, skip)
                    )
                else:
                    found.add(os.path.abspath(match))
        else:
            raise InputError(f"input {source!r} does not exist")
    return FileInputs(sorted(found))
