"""deepaas: serve a machine-learning model over the DEEPaaS V2 REST API."""

__version__ = "3.0.0.dev0"

__all__ = ["__version__"]
