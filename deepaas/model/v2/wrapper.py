"""Where DEEPaaS 2.x models and their tests import ``UploadedFile`` from.

``from deepaas.model.v2.wrapper import UploadedFile`` gives the very class
the framework hands to ``predict`` and ``train``
(:class:`deepaas.model.files.UploadedFile`), so a model's own tests build
exactly what it receives when served.  DEEPaaS 2.x's server-side wrapper
machinery is not part of a model's interface and is not offered here.
"""

from deepaas.model.files import UploadedFile

__all__ = ["UploadedFile"]
