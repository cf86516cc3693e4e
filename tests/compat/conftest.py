"""Fixtures for the compatibility tests: those of the API tests, shared."""

from tests.api.conftest import make_client

__all__ = ["make_client"]
