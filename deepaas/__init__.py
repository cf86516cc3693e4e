"""deepaas: serve a machine-learning model over the DEEPaaS V2 REST API."""

__version__ = "3.0.0.dev0"

from deepaas.model.worker_device import device, torch_device  # noqa: E402

__all__ = ["__version__", "device", "torch_device"]
