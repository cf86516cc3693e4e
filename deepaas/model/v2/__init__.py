"""The model-side modules of DEEPaaS 2.x, for models written against it.

Published models import two names from here: :class:`BaseModel`
(``deepaas.model.v2.base``), the abstract class a class entry point may
subclass, and :class:`UploadedFile` (``deepaas.model.v2.wrapper``), the
namedtuple a model receives for each file argument (also
``deepaas.model.UploadedFile``).  Both keep their 2.x behaviour.  What else
2.x's ``deepaas.model.v2`` held (its server-side wrapper and pools, its
test model, its model registry) was never a model's interface and is not
offered: docs/models.md.
"""

from deepaas.model.v2.base import BaseModel
from deepaas.model.v2.wrapper import UploadedFile

__all__ = ["BaseModel", "UploadedFile"]
