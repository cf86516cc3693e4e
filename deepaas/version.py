"""The version line the console scripts print for ``--version``.

Platform scripts written for DEEPaaS 2.x read the last line of
``deepaas-cli --version`` (and ``deepaas-run --version``), cut it at the
first ``-`` and parse the rest as dot-separated integers, to check for
DEEPaaS >= 2.5.0.  A PEP 440 string such as ``3.0.0.dev0`` breaks that
parse, so the release numbers come first and anything after them follows a
``-`` (``3.0.0-dev0``, which PEP 440 also reads as ``3.0.0.dev0``).
"""

from __future__ import annotations

import re

from deepaas import __version__

__all__ = ["version_line"]

_RELEASE = re.compile(r"(?P<release>\d+(?:\.\d+)*)(?P<rest>.*)", re.DOTALL)


def version_line(version: str = __version__) -> str:
    """``version`` as ``RELEASE`` or ``RELEASE-REST`` (``3.0.0-dev0``)."""
    match = _RELEASE.fullmatch(version.strip().lstrip("vV"))
    if match is None:
        return version
    rest = match["rest"].lstrip(".-_+")
    return f"{match['release']}-{rest}" if rest else match["release"]
