"""Logging set-up for the console scripts (never done on import)."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(*, level: str = "INFO", debug: bool = False,
                  log_file: str | None = None) -> int:
    """Configure the root logger; return the numeric level chosen."""
    numeric = logging.DEBUG if debug else getattr(logging, level.upper(), logging.INFO)
    handler: logging.Handler
    if log_file:
        handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.getLogger("aiohttp.access").setLevel(max(numeric, logging.WARNING))
    return numeric
