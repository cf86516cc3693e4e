"""deepaas-cli's general options: every option of deepaas-run, as in DEEPaaS 2.x.

DEEPaaS 2.x's deepaas-cli registered all of deepaas-run's options and
oslo.log's, so command lines written for it pass them before the method:
``deepaas-cli --debug --log-file cli.log --nowarm --workers 2 predict ...``.
Here every option of deepaas-run is accepted, made from the same
definitions (deepaas.config), before the method or after it, where a
model's argument of the same name wins.  The options that mean something
for one call apply, through deepaas.config and deepaas.log as deepaas-run
uses them: the model (``--model-name``, ``--config-file``,
``--config-dir``), ``--warm`` and the logging options.  The others concern
the server (``--workers``, the endpoint switches, ``--listen-port``...):
they are accepted and ignored, with a DEBUG line.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from oslo_config import cfg

from deepaas.config import (
    FALSE_WORDS,
    TRUE_WORDS,
    list_opts,
    normalize_bool_flags,
)
from deepaas.version import version_line

__all__ = [
    "APPLIED",
    "MULTIPROCESSING_OPTION",
    "OUTPUT_OPTION",
    "STRICT_OPTION",
    "CommandLine",
    "add_general_options",
    "early_values",
    "general_values",
    "report_ignored",
    "split_command_line",
]

LOG = logging.getLogger("deepaas.cli")

#: DEEPaaS 2.x's two options of deepaas-cli itself (long: no model argument
#: may have them).
OUTPUT_OPTION = "--deepaas_method_output"
MULTIPROCESSING_OPTION = "--deepaas_with_multiprocessing"
#: Refuse values that fail a field's validators (2.x passed them on).
STRICT_OPTION = "--strict"

_LOGGING = frozenset(
    {
        "debug",
        "log_level",
        "log_file",
        "log_dir",
        "watch_log_file",
        "log_date_format",
        "use_json",
        "use_syslog",
        "syslog_log_facility",
        "use_journal",
        "log_config_append",
    }
)
#: The options that mean something for one call (the others are the server's).
APPLIED = _LOGGING | {"model_name", "warm"}

#: oslo.config's own options, which read config files.
CONFIG_OPTIONS = {"config_file": "--config-file", "config_dir": "--config-dir"}

_HELP = {
    "log_level": "log level (default WARNING; --debug: DEBUG)",
    "warm": "run the model's warm() before predict or train (default; "
    "--no-warm skips it)",
    "model_name": "the model to call (default: $DEEPAAS_V2_MODEL, else the only "
    "installed model, else the demo model)",
    "log_dir": "base of a relative --log-file; alone, the log goes to "
    "DIR/deepaas-cli.log",
}
_SERVER_NOTE = (
    "Every other option of deepaas-run is accepted, before or after the "
    "method, as DEEPaaS 2.x's deepaas-cli does, and ignored, for they "
    "concern the server: --workers/-p, the endpoint switches "
    "(--[no]predict-endpoint, --[no]train-endpoint, --[no]debug-endpoint, "
    "--[no]doc-endpoint), --client-max-size, --listen-ip, --listen-port, "
    "--base-path... (deepaas-run --help lists them all)."
)


def _opts() -> list[cfg.Opt]:
    return [opt for _, opts in list_opts() for opt in opts]


def _is_bool(opt: cfg.Opt) -> bool:
    return isinstance(opt.type, cfg.types.Boolean)


def _names(opt: cfg.Opt) -> list[str]:
    return [opt.name, *(old.name for old in opt.deprecated_opts if old.name)]


def _ambiguous(string: str) -> bool:
    """Could a model's argument have this option string (``--debug``)?

    Fields are Python names: ``--log-file`` can only be deepaas-cli's.
    """
    if not string.startswith("--"):
        return False  # short options: fields are all --name
    name = string[2:]
    return name.isidentifier() or (name.startswith("no-") and name[3:].isidentifier())


def _bool_names() -> set[str]:
    """Names of the boolean options, for :func:`normalize_bool_flags`."""
    return {MULTIPROCESSING_OPTION[2:]} | {opt.name for opt in _opts() if _is_bool(opt)}


def _converter(opt: cfg.Opt) -> Callable[[str], Any]:
    """Convert and check a value as deepaas-run does (``--workers -1`` fails)."""

    def convert(text: str) -> Any:
        try:
            return opt.type(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None

    return convert


def add_general_options(
    parser: argparse.ArgumentParser,
    *,
    in_method: bool = False,
    unambiguous_only: bool = False,
) -> None:
    """Add DEEPaaS 2.x's own two options and every deepaas-run option.

    Values not given stay absent from the namespace.  In a method's parser
    only ``--model-name`` and the config files are listed in ``--help``;
    ``unambiguous_only`` leaves out the strings a model's argument may have.
    """
    suppress = argparse.SUPPRESS
    if not (in_method or unambiguous_only):
        parser.add_argument(
            "--version",
            action="version",
            version=version_line(),
            help="print the version (e.g. 3.0.0, or 3.0.0-dev0 for a development "
            "release) and exit",
        )
    parser.add_argument(
        OUTPUT_OPTION,
        metavar="FILE",
        dest="method_output",
        default=suppress,
        help="also save the answer in FILE (required for answers that are not "
        "JSON when standard output is a terminal)",
    )
    parser.add_argument(
        MULTIPROCESSING_OPTION,
        dest="with_multiprocessing",
        action="store_true",
        default=suppress,
        help="start the model's own processes with the 'spawn' method, as "
        "DEEPaaS 2.x does (default)",
    )
    parser.add_argument(
        "--no" + MULTIPROCESSING_OPTION[2:],
        "--no-" + MULTIPROCESSING_OPTION[2:],
        dest="with_multiprocessing",
        action="store_false",
        default=suppress,
        help="leave the platform's default start method for them",
    )
    parser.add_argument(
        STRICT_OPTION,
        dest="strict",
        action="store_true",
        default=suppress,
        help="refuse argument values that fail the model's checks (a choice, a "
        "range); by default they reach the model with a warning, as in DEEPaaS 2.x",
    )
    shown = {"model_name"} if in_method else APPLIED
    model: Any = parser
    logs: Any = parser
    server: Any = parser
    if not in_method:
        logs = parser.add_argument_group("logging (DEEPaaS 2.x's, from oslo.log)")
        server = parser.add_argument_group(
            "options of deepaas-run", description=_SERVER_NOTE
        )
    for dest, string in CONFIG_OPTIONS.items():
        model.add_argument(
            string,
            dest=dest,
            action="append",
            metavar="PATH" if dest == "config_file" else "DIR",
            default=suppress,
            help="a deepaas config file ([DEFAULT] section); model_name, warm and "
            "the logging options apply, the command line wins; repeatable"
            if dest == "config_file"
            else "a folder of *.conf config files, read after --config-file",
        )
    for opt in _opts():
        group = (
            model
            if opt.dest in ("model_name", "warm")
            else (logs if opt.dest in _LOGGING else server)
        )
        help_text = suppress
        if opt.dest in shown:
            help_text = _HELP.get(opt.dest, opt.help or "").replace("%", "%%")
        strings = [f"--{name}" for name in _names(opt)]
        if opt.short:
            strings.append(f"-{opt.short}")
        negations = [
            f"--{prefix}{name}"
            for name in (_names(opt) if _is_bool(opt) else [])
            for prefix in ("no", "no-")
        ]
        if unambiguous_only:
            strings = [s for s in strings if not _ambiguous(s)]
            negations = [s for s in negations if not _ambiguous(s)]
        if _is_bool(opt):
            on_help = (
                help_text
                if help_text is suppress
                else f"{help_text} (--no{opt.name}: off)"
            )
            for switches, const, text in (
                (strings, True, on_help),
                (negations, False, suppress),
            ):
                if switches:
                    group.add_argument(
                        *switches,
                        dest=opt.dest,
                        action="store_const",
                        const=const,
                        default=suppress,
                        help=text,
                    )
        elif strings:
            group.add_argument(
                *strings,
                dest=opt.dest,
                action="append" if opt.multi else "store",
                type=_converter(opt),
                metavar=opt.metavar or opt.dest.upper(),
                default=suppress,
                help=help_text,
            )


def _method_index(argv: Sequence[str]) -> int | None:
    """Where the method is: the first word that is no option or option value.

    A boolean option's ``true``/``false`` after it is its value.
    """
    takes_value = {OUTPUT_OPTION, *CONFIG_OPTIONS.values()}
    booleans: set[str] = set()
    for opt in _opts():
        strings = [f"--{name}" for name in _names(opt)]
        strings += [f"-{opt.short}"] if opt.short else []
        (booleans if _is_bool(opt) else takes_value).update(strings)
    words = TRUE_WORDS | FALSE_WORDS
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return None
        if arg.startswith("-") and len(arg) > 1:
            name, sep, _ = arg.partition("=")
            if not sep and (
                name in takes_value
                or (
                    name in booleans
                    and i + 1 < len(argv)
                    and argv[i + 1].lower() in words
                )
            ):
                i += 1
            i += 1
            continue
        return i
    return None


def general_values(namespace: argparse.Namespace) -> dict[str, Any]:
    """The general options given on the command line, by destination."""
    dests = {opt.dest for opt in _opts()} | set(CONFIG_OPTIONS)
    return {k: v for k, v in vars(namespace).items() if k in dests}


def report_ignored(values: Mapping[str, Any]) -> None:
    """Say (at DEBUG) which options given concern the server only."""
    for opt in _opts():
        if opt.dest in values and opt.dest not in APPLIED:
            LOG.debug(
                "--%s concerns deepaas-run's server, not one call: ignored", opt.name
            )


@dataclasses.dataclass(frozen=True)
class CommandLine:
    """A deepaas-cli command line cut at its method."""

    before: list[str]
    method: str | None
    after: list[str]

    def normalized(self, *, taken: Collection[str]) -> list[str]:
        """The command line with ``--flag false`` spelled ``--noflag``.

        Raises ``cfg.Error`` for ``--flag maybe``.  After the method, the
        names in ``taken`` (the model's arguments) are left to the model.
        """
        names = _bool_names()
        result = normalize_bool_flags(self.before, names)
        if self.method is None:
            return result
        after = normalize_bool_flags(self.after, names - set(taken))
        return [*result, self.method, *after]


def split_command_line(argv: Sequence[str]) -> CommandLine:
    """Cut ``argv`` at its method (all of it is before when there is none)."""
    index = _method_index(argv)
    if index is None:
        return CommandLine(list(argv), None, [])
    return CommandLine(list(argv[:index]), argv[index], list(argv[index + 1 :]))


def early_values(
    line: CommandLine, make_parser: Callable[[], argparse.ArgumentParser]
) -> dict[str, Any]:
    """The general options given, before the model and its arguments are known.

    After the method only those no argument of a model can have count
    (``--log-file``, not ``--debug``).
    """
    ambiguous = {name for name in _bool_names() if _ambiguous(f"--{name}")}
    words = line.normalized(taken=ambiguous)
    before = make_parser()
    add_general_options(before)
    values = general_values(before.parse_known_args(words[: len(line.before)])[0])
    if line.method is not None:
        after = make_parser()
        add_general_options(after, unambiguous_only=True)
        rest = words[len(line.before) + 1 :]
        values.update(general_values(after.parse_known_args(rest)[0]))
    return values
