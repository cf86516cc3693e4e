"""Training endpoints (filled in by the training service work)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register the training routes."""
