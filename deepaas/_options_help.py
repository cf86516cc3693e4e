"""``--help`` of deepaas-run: options grouped by topic, defaults shown.

oslo.config's own help lists every option alphabetically without defaults;
this one is built from the same option objects.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from oslo_config import cfg

__all__ = ["format_help"]


def _is_bool(opt: cfg.Opt) -> bool:
    return isinstance(opt.type, cfg.types.Boolean)


def _shown_default(opt: cfg.Opt) -> str | None:
    if opt.sample_default is not None:
        return str(opt.sample_default)
    if _is_bool(opt):
        return "on" if opt.default else "off"
    if opt.default in (None, "", []):
        return None
    return str(opt.default)


def format_help(
    prog: str,
    description: str | None,
    groups: Sequence[tuple[str, Sequence[cfg.Opt]]],
) -> str:
    """``--help`` with the options grouped by topic and their defaults shown.

    oslo.config's own help lists every option alphabetically without
    defaults; this one is built from the same option objects.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=f"{prog} [OPTION ...]",
        description=description,
        add_help=False,
        epilog="Boolean options are switched with --flag or --no-flag (also "
        "written --noflag, or --flag true|false). Every option can also be "
        "set in a config file, in its [DEFAULT] section, with underscores: "
        "listen_port = 5000. The command line wins over config files.",
    )
    general = parser.add_argument_group("general")
    general.add_argument(
        "-h", "--help", action="store_true", help="show this help and exit"
    )
    general.add_argument(
        "--version", action="store_true", help="show the version and exit"
    )
    general.add_argument(
        "--config-file",
        metavar="PATH",
        action="append",
        help="a config file to read (repeatable; later files win)",
    )
    general.add_argument(
        "--config-dir",
        metavar="DIR",
        action="append",
        help="read every *.conf file of DIR, in order",
    )
    for title, opts in groups:
        group = parser.add_argument_group(title)
        for opt in opts:
            names = [f"--{opt.name}"]
            if opt.short:
                names.insert(0, f"-{opt.short}")
            text = (opt.help or "").replace("%", "%%")
            shown = _shown_default(opt)
            if shown is not None:
                text += f" (default: {shown})".replace("%", "%%")
            if _is_bool(opt):
                names.append(f"--no-{opt.name}")
                group.add_argument(*names, action="store_true", help=text)
            else:
                group.add_argument(*names, metavar=_metavar(opt), help=text)
    return parser.format_help()


def _metavar(opt: cfg.Opt) -> str:
    if opt.metavar:
        return str(opt.metavar)
    choices = getattr(opt.type, "choices", None)
    if choices:
        return "{" + ",".join(map(str, choices)) + "}"
    if isinstance(opt.type, cfg.types.Port):
        return "PORT"
    if isinstance(opt.type, cfg.types.Integer):
        return "N"
    if isinstance(opt.type, cfg.types.Float):
        return "SECONDS" if "timeout" in opt.name or "grace" in opt.name else "NUMBER"
    return "TEXT"
