"""What each input's predict call gets, from the command line and the input.

:class:`CallArguments` matches the command line to the model's arguments
once (unknown ``--arg`` names, the file argument, ``--accept``: usage
errors), then builds for each input what a worker needs to call the model:
the input's file, or its JSON Lines arguments, with every file replaced by
a copy of its own (:class:`~deepaas.batch.copies.InputCopies`).
"""

from __future__ import annotations

import json
import mimetypes
import os
from typing import Any

from deepaas.batch.copies import InputCopies, InputUnreadable
from deepaas.batch.inputs import FileInputs, InputItem, Inputs
from deepaas.batch.options import BatchOptions, UsageError
from deepaas.exceptions import ArgumentsInvalid
from deepaas.model.description import ModelDescription
from deepaas.model.files import UploadedFile
from deepaas.model.wrapper import RawArguments


def _content_type(path: str, cache: dict[str, str]) -> str:
    ext = os.path.splitext(path)[1].lower()
    found = cache.get(ext)
    if found is None:
        found = mimetypes.guess_type(f"x{ext}")[0] or "application/octet-stream"
        cache[ext] = found
    return found


def is_json(content_type: str) -> bool:
    """Whether an answer of ``content_type`` is JSON (recorded in the record)."""
    media = content_type.split(";")[0].strip()
    return media == "application/json" or media.endswith("+json")


class CallArguments:
    """The arguments of one run's predict calls, input by input."""

    def __init__(
        self, options: BatchOptions, inputs: Inputs, copies: InputCopies
    ) -> None:
        self.options = options
        self.inputs = inputs
        self._copies = copies
        self._types: dict[str, str] = {}
        self._fixed_pairs: list[tuple[str, Any]] = []
        self._fixed_json: dict[str, Any] = {}
        #: Fixed file arguments (--arg NAME=PATH): name -> absolute path.
        self._fixed_files: dict[str, str] = {}
        #: The file argument that receives each input file (once checked).
        self.file_arg: str | None = None
        self._file_args: set[str] = set()

    def check(self, description: ModelDescription) -> None:
        """Match the command line to the model's arguments (UsageError if not)."""
        self._fixed_pairs.clear()
        self._fixed_json.clear()
        self._fixed_files.clear()
        predict = description.predict
        if not predict.available:
            raise UsageError(f"model {self.options.model.name!r} has no predict method")
        known = set(predict.arguments)
        types = {arg.name: arg.type for arg in predict.args}
        self._file_args = set(predict.file_arguments)
        for name, value in self.options.fixed_args:
            if name not in known:
                raise UsageError(
                    f"--arg {name}: model {self.options.model.name!r} has no such "
                    "predict argument (it has: "
                    f"{', '.join(predict.arguments) or 'none'})"
                )
            if name in self._file_args:
                if not os.path.isfile(value):
                    raise UsageError(f"--arg {name}: file {value!r} does not exist")
                self._fixed_files[name] = os.path.abspath(value)
            elif types.get(name) in ("array", "object") and value[:1] in "[{":
                try:
                    self._fixed_json[name] = json.loads(value)
                except ValueError:
                    raise UsageError(
                        f"--arg {name}: {value!r} is not valid JSON"
                    ) from None
            else:
                self._fixed_pairs.append((name, value))
        accept = self.options.accept
        if accept and description.accept and accept not in description.accept:
            raise UsageError(
                f"--accept {accept!r}: model {self.options.model.name!r} answers "
                f"{', '.join(description.accept)}"
            )
        if accept and not description.accept and not is_json(accept):
            raise UsageError(
                f"--accept {accept!r}: model {self.options.model.name!r} offers no "
                "choice of media type (it has no 'accept' argument)"
            )
        if not isinstance(self.inputs, FileInputs):
            return
        file_arg = self.options.file_arg
        if file_arg is not None:
            if file_arg not in self._file_args:
                raise UsageError(
                    f"--file-arg {file_arg}: not a file argument of model "
                    f"{self.options.model.name!r} (its file arguments: "
                    f"{', '.join(predict.file_arguments) or 'none'})"
                )
        elif len(predict.file_arguments) == 1:
            file_arg = predict.file_arguments[0]
        elif not predict.file_arguments:
            raise UsageError(
                f"model {self.options.model.name!r} takes no file argument; give "
                "its arguments with --input-jsonl FILE instead of input files"
            )
        else:
            raise UsageError(
                f"model {self.options.model.name!r} has several file arguments "
                f"({', '.join(predict.file_arguments)}); choose one with --file-arg"
            )
        if file_arg in dict(self.options.fixed_args):
            raise UsageError(f"--arg {file_arg} is the input file argument itself")
        self.file_arg = file_arg

    def _upload(self, item: InputItem, name: str, path: str) -> UploadedFile:
        return UploadedFile(
            name=name,
            filename=self._copies.copy(item.key, path),
            content_type=_content_type(path, self._types),
            original_filename=os.path.basename(path),
        )

    def fixed(self) -> RawArguments:
        """The arguments every input shares (--arg)."""
        return RawArguments(
            pairs=list(self._fixed_pairs), json_body=dict(self._fixed_json) or None
        )

    def request(self, item: InputItem) -> tuple[Any, ...]:
        """What a worker needs for one input; raises for an unusable input.

        ``("file", copy, media type, original name, fixed file copies)`` for
        an input file, ``("args", raw arguments)`` for a JSON Lines input;
        every file in it is a copy made for this input.
        """
        if item.key in self._copies:  # handed out before: its copies are stale
            self._copies.drop(item.key)
        try:
            return self._make_request(item)
        except BaseException:
            self._copies.drop(item.key)
            raise

    def _make_request(self, item: InputItem) -> tuple[Any, ...]:
        if item.text is None:
            path = item.path
            assert path is not None
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise InputUnreadable(f"input file {path!r} is missing or unreadable")
            copy = self._copies.copy
            others = tuple(
                (name, copy(item.key, fixed), *self._names(fixed))
                for name, fixed in self._fixed_files.items()
            )
            return ("file", copy(item.key, path), *self._names(path), others)
        try:
            line = json.loads(item.text)
        except ValueError as exc:
            raise InputUnreadable(
                f"line {item.line} is not valid JSON: {exc}"
            ) from None
        if not isinstance(line, dict):
            raise InputUnreadable(
                f"line {item.line} is not a JSON object of predict arguments"
            )
        base = os.path.dirname(item.path or "")
        for name in self._file_args & line.keys():
            value = line[name]
            if isinstance(value, str):
                path = os.path.join(base, value)
                if not os.path.isfile(path):
                    raise InputUnreadable(f"{name}: file {value!r} does not exist")
                line[name] = self._upload(item, name, path)
        pairs = [(k, v) for k, v in self._fixed_pairs if k not in line]
        pairs += [
            (name, self._upload(item, name, path))
            for name, path in self._fixed_files.items()
            if name not in line
        ]
        return (
            "args",
            RawArguments(pairs=pairs, json_body={**self._fixed_json, **line}),
        )

    def _names(self, path: str) -> tuple[str, str]:
        """The media type and the original name of an input file."""
        return _content_type(path, self._types), os.path.basename(path)

    def check_rejected(self, error: ArgumentsInvalid) -> None:
        """A rejected --arg fails every input alike: that is a usage error."""
        fixed = {name for name, _ in self.options.fixed_args}
        for name, messages in error.errors.items():
            if name in fixed:
                text = (
                    "; ".join(map(str, messages))
                    if isinstance(messages, list)
                    else str(messages)
                )
                raise UsageError(f"--arg {name}: {text}")


__all__ = ["CallArguments", "is_json"]
