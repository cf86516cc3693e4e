"""deepaas-cli: call one method of a model from the shell.

    deepaas-cli [--model-name NAME] get_metadata
    deepaas-cli [--model-name NAME] warm
    deepaas-cli [--model-name NAME] predict --ARG VALUE ... [--deepaas_method_output F]
    deepaas-cli [--model-name NAME] train --ARG VALUE ... [--deepaas_method_output F]

DEEPaaS 2.x's command lines work as they are: its own options may come
before the method (``deepaas-cli --deepaas_method_output out.json predict
--files=x.jpg``), and the answer is one line of JSON on standard output,
which scripts cut out with ``grep -Po '{.*}'``.  Every option of
deepaas-run is accepted too, as 2.x's general options were: the logging
options, ``--debug`` and ``--warm`` apply, the server's are ignored (see
``_general``).

The options of ``predict`` and ``train`` are generated from the model's
fields: their help, choices and defaults come from the field; values are
converted and validated by the field itself, as the API does.  File
arguments take a path (the model gets a temporary copy); list and dict
arguments take a JSON or Python literal (``--probs '[0.1, 0.2]'``) or, for
lists, the option repeated.  See docs/cli.md.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import json
import logging
import mimetypes
import multiprocessing
import os
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NoReturn

from marshmallow import fields
from oslo_config import cfg

from deepaas.cmd import fail
from deepaas.cmd._cli_output import (
    PROG,
    OutputError,
    answer_bytes,
    emit,
    prediction_output_path,
)
from deepaas.cmd._fields import add_field_options
from deepaas.cmd._general import (
    STRICT_OPTION,
    add_general_options,
    early_values,
    general_values,
    report_ignored,
    split_command_line,
)
from deepaas.cmd._settings import CliSettings, cli_settings
from deepaas.exceptions import ArgumentsInvalid, DeepaasError, ModelError
from deepaas.log import (
    LoggingSettings,
    LoggingSetupError,
    setup_logging_from_settings,
)
from deepaas.model.files import UploadedFile, private_copies
from deepaas.model.loading import available_models, select_models
from deepaas.model.wrapper import (
    ModelWrapper,
    RawArguments,
    load_wrapped,
    to_json_bytes,
)

LOG = logging.getLogger("deepaas.cli")
METHODS = ("get_metadata", "warm", "predict", "train")


class UsageError(ValueError):
    """A command line that cannot be run (exit status 2).

    ``help_command`` is the ``--help`` that lists what was wrong (the
    method's own for its options), when there is one.
    """

    def __init__(self, message: str, help_command: str | None = None) -> None:
        super().__init__(message)
        self.help_command = help_command

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} (see {self.help_command})" if self.help_command else text


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: a model's --mode must never be taken for --model-name.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, help_command=f"{self.prog} --help")


def _literal(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise UsageError(
            f"argument --{name}: {text!r} is not a JSON or Python literal"
        ) from None


def _raw_arguments(values: dict[str, Any], kinds: Mapping[str, str]) -> RawArguments:
    """Strings for the fields to convert; lists and dicts already decoded."""
    pairs: list[tuple[str, Any]] = []
    body: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        kind = kinds[name]
        if kind == "file":
            if not os.path.isfile(value):
                raise UsageError(f"argument --{name}: file {value!r} does not exist")
            pairs.append(
                (
                    name,
                    UploadedFile(
                        name=name,
                        filename=os.path.abspath(value),
                        content_type=mimetypes.guess_type(value)[0]
                        or "application/octet-stream",
                        original_filename=os.path.basename(value),
                    ),
                )
            )
        elif kind == "list":
            if len(value) == 1 and value[0].lstrip()[:1] in "[(":
                body[name] = list(_literal(name, value[0]))
            else:
                body[name] = list(value)
        elif kind == "dict":
            decoded = _literal(name, value)
            if not isinstance(decoded, dict):
                raise UsageError(f"argument --{name}: {value!r} is not a dict")
            body[name] = decoded
        else:
            pairs.append((name, value))
    return RawArguments(pairs=pairs, json_body=body or None)


def _fields_of(wrapper: ModelWrapper, method: str) -> Mapping[str, fields.Field]:
    schema = wrapper.predict_schema if method == "predict" else wrapper.train_schema
    return schema.fields


def build_parser(
    wrapper: ModelWrapper | None = None, *, note: str | None = None
) -> tuple[argparse.ArgumentParser, dict[str, dict[str, str]]]:
    """The full parser, with predict/train options from ``wrapper``'s fields.

    Without a wrapper (no model could be chosen), ``note`` says why the
    model's own options are missing from ``--help``.
    """
    name = f" ({wrapper.name})" if wrapper else ""
    parser = _Parser(
        prog=PROG,
        description=f"Call one method of a DEEPaaS model{name} and print its "
        "answer as one line of JSON on standard output. Without a METHOD, "
        "get_metadata is called.",
        epilog=note,
    )
    add_general_options(parser)
    methods = parser.add_subparsers(dest="method", metavar="METHOD")
    kinds: dict[str, dict[str, str]] = {}
    helps = {
        "get_metadata": "print the model's metadata",
        "warm": "run the model's warm() (load weights) and report success",
        "predict": "run predict with the arguments below",
        "train": "run train (in this process, until it ends) with the arguments below",
    }
    general = (
        f"The options of '{PROG} --help' are accepted here too; where one of "
        "the model's arguments has the same name, the argument wins."
    )
    for method in METHODS:
        sub = methods.add_parser(
            method,
            prog=f"{PROG} {method}",
            help=helps[method],
            description=helps[method],
            epilog=" ".join(
                filter(
                    None, [note if method in ("predict", "train") else None, general]
                )
            ),
            allow_abbrev=False,
            # The model's arguments are added last and win over ours (--debug).
            conflict_handler="resolve",
        )
        add_general_options(sub, in_method=True)
        if wrapper is not None and method in ("predict", "train"):
            kinds[method] = add_field_options(sub, _fields_of(wrapper, method))
    return parser, kinds


# -- running --------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``deepaas-cli``; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args_list)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except (UsageError, OutputError) as exc:
        return fail(PROG, str(exc), 2)
    except ArgumentsInvalid as exc:
        from marshmallow.exceptions import SCHEMA

        # A rule about several arguments comes under marshmallow's
        # "_schema", which is no option: its message stands alone.
        problems = "; ".join(
            ("" if name == SCHEMA else f"--{name}: ")
            + (" ".join(map(str, m)) if isinstance(m, list) else str(m))
            for name, m in exc.errors.items()
        )
        return fail(PROG, f"invalid arguments: {problems}", 2)
    except DeepaasError as exc:
        if isinstance(exc, ModelError) and exc.traceback:
            LOG.debug("%s", exc.traceback)
        return fail(PROG, exc.message, 1)
    except BrokenPipeError:  # e.g. piped into head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        return fail(PROG, str(exc), 1)


def _main(argv: list[str]) -> int:
    line = split_command_line(argv)
    try:
        known = early_values(line, lambda: _Parser(prog=PROG, add_help=False))
    except cfg.Error as exc:  # --warm maybe
        raise UsageError(str(exc), help_command=f"{PROG} --help") from None
    settings, logging_key = _configure(known)
    names = list(settings.model_names)
    if len(names) > 1:
        raise UsageError(
            f"{PROG} calls one model (got {', '.join(names)}); choose one with "
            "--model-name NAME"
        )
    try:
        spec = select_models(names, available_models())[0]
        wrapper = load_wrapped(spec)
    except DeepaasError as exc:
        if not _wants_help(argv):
            raise
        # --help works without a model; the model's options need one.
        note = (
            f"The options of predict and train come from the model's fields and "
            f"are listed once a model can be loaded: {exc.message}."
        )
        build_parser(note=note)[0].parse_args(argv)  # prints the help, exits
        raise
    parser, kinds = build_parser(wrapper)
    try:
        words = line.normalized(taken=kinds.get(line.method or "", {}))
    except cfg.Error as exc:
        raise UsageError(
            str(exc), help_command=f"{PROG} {line.method} --help"
        ) from None
    args, extra = parser.parse_known_args(words)
    if extra:
        # Options after the method belong to the method's own --help.
        past = args.method is not None and extra[0] not in line.before
        where = f"{PROG} {args.method}" if past else PROG
        raise UsageError(
            f"unrecognized arguments: {' '.join(extra)}", help_command=f"{where} --help"
        )
    given = general_values(args)
    if given != known:
        # An option after the method that none of the model's arguments took.
        settings, _ = _configure(given, logging_key)
    report_ignored(given)
    if getattr(args, "with_multiprocessing", True):
        # DEEPaaS 2.x's default: a model's Pool or DataLoader workers are
        # spawned, never forked from a process that holds threads.
        multiprocessing.set_start_method("spawn", force=True)
    method = args.method or "get_metadata"
    if args.method is None:
        LOG.warning(
            "no method given: calling get_metadata (methods: %s)", ", ".join(METHODS)
        )
    output = getattr(args, "method_output", None)
    if method == "get_metadata":
        return emit(to_json_bytes(wrapper.metadata()), "application/json", output)
    if method == "warm":
        with _stdout_to_stderr():
            wrapper.warm()
        print(f"{PROG}: model {spec.name!r} warmed", file=sys.stderr)
        return 0
    values = {
        dest.split(":", 1)[1]: value
        for dest, value in vars(args).items()
        if dest.startswith("field:")
    }
    raw = _raw_arguments(values, kinds[method])
    waive = None if getattr(args, "strict", False) else _report_waived
    if method == "train":
        kwargs = wrapper.parse_train_args(raw, waive=waive)
    else:
        kwargs = wrapper.parse_predict_args(raw, waive=waive)
    if settings.warm:
        # As deepaas-run's workers do: a model that loads its weights in
        # warm() is ready for its first call (--no-warm skips it).
        with _stdout_to_stderr():
            wrapper.warm()
        LOG.debug("model %r warmed", spec.name)
    if method == "train":
        began = datetime.datetime.now()
        # The model gets copies of the user's files: it may delete them.
        with _stdout_to_stderr(), private_copies(kwargs) as own:
            result = wrapper.call("train", own)
        record = _training_record(kwargs, result, began)
        return emit(to_json_bytes(record), "application/json", output)
    accept = kwargs.get("accept")
    with _stdout_to_stderr(), private_copies(kwargs) as own:
        result = wrapper.call("predict", own)
    body, media = answer_bytes(result, accept)
    if output:
        output = prediction_output_path(output, accept)
    return emit(body, media, output)


def _report_waived(name: str, value: Any, messages: Any) -> None:
    """Warn of a value passed to the model although it fails a check."""
    if isinstance(messages, dict):  # a list's items: {index: [message]}
        messages = [f"item {k}: {' '.join(map(str, v))}" for k, v in messages.items()]
    reasons = " ".join(map(str, messages)) if isinstance(messages, list) else messages
    LOG.warning(
        "--%s %r fails the model's check (%s); passed to the model unchecked, "
        "as DEEPaaS 2.x did (%s refuses it)",
        name,
        value,
        reasons,
        STRICT_OPTION,
    )


def _configure(
    values: Mapping[str, Any], previous: LoggingSettings | None = None
) -> tuple[CliSettings, LoggingSettings]:
    """Read the options that apply and set up logging (again if it changed).

    Returns the settings and what the logging was set up with.
    """
    try:
        settings = cli_settings(values, prog=PROG)
        if settings.logging != previous:
            setup_logging_from_settings(settings.logging, PROG)
    except cfg.Error as exc:
        raise UsageError(
            f"configuration: {exc}", help_command=f"{PROG} --help"
        ) from None
    except LoggingSetupError as exc:
        raise UsageError(str(exc)) from None
    return settings, settings.logging


def _wants_help(argv: Sequence[str]) -> bool:
    return "-h" in argv or "--help" in argv


def _training_record(
    kwargs: Mapping[str, Any], output: Any, began: datetime.datetime
) -> dict[str, Any]:
    """A finished training as DEEPaaS 2.x's deepaas-cli (and the API) show it."""
    ended = datetime.datetime.now()
    args = {
        name: value.original_filename if isinstance(value, UploadedFile) else value
        for name, value in kwargs.items()
    }
    return {
        "date": str(began),
        "args": args,
        "status": "done",
        "uuid": uuid.uuid4().hex,
        "result": {
            "finish_date": str(ended),
            "duration": str(ended - began),
            "output": output,
        },
    }


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what the model prints (or its child processes write) to stderr.

    Standard output then holds the answer only, so that it can be piped.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no standard output at all
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


if __name__ == "__main__":
    sys.exit(main())
