"""HTTP only: the app factory, routes per resource, OpenAPI, error handling."""

from deepaas.api.app import create_app
from deepaas.api.keys import ApiSettings

__all__ = ["ApiSettings", "create_app"]
