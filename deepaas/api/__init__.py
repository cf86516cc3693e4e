"""HTTP only: the app factory, routes per resource, OpenAPI, error handling."""

from deepaas.api.app import create_app
from deepaas.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]
