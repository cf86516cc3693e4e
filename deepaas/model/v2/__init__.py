"""The model-side modules of DEEPaaS 2.x, for models written against it.

Published models import two names from here: :class:`BaseModel`
(``deepaas.model.v2.base``), the abstract class a class entry point may
subclass, and :class:`UploadedFile` (``deepaas.model.v2.wrapper``), the
namedtuple a model receives for each file argument.  Both keep their 2.x
behaviour; new code may import them from ``deepaas.model`` instead.
"""

from deepaas.model.v2.base import BaseModel
from deepaas.model.v2.wrapper import UploadedFile

__all__ = ["BaseModel", "UploadedFile"]
