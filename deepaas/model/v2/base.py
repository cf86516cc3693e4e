"""BaseModel: the abstract class a DEEPaaS V2 model may subclass.

Subclassing it is optional: any module, class or object with the same
methods is served the same way.  What it gives a model author is a checked
list of the interface (a subclass that forgets one of the methods cannot be
instantiated) and a place to read what each method must do.
"""

from __future__ import annotations

import abc
from typing import Any


class BaseModel(abc.ABC):
    """The DEEPaaS V2 model interface, as an abstract class.

    Register the subclass itself as the entry point (group
    ``deepaas.v2.model``): deepaas instantiates it once, with no arguments,
    in every process that serves it.

    A method the model does not offer may simply call ``super()``: the
    implementations here raise :class:`NotImplementedError`, which deepaas
    reads as "not provided".  ``get_metadata`` then falls back to the
    default metadata, ``get_predict_args``/``get_train_args`` to no
    arguments, ``warm`` to nothing, and ``predict``/``train`` answer 501.

    Example::

        from webargs import fields
        from deepaas.model.v2.base import BaseModel

        class Model(BaseModel):
            def get_metadata(self):
                return {"name": "doubler", "author": "A. Author",
                        "description": "Doubles a number", "version": "1.0"}

            def warm(self):
                self.factor = 2

            def get_predict_args(self):
                return {"x": fields.Float(required=True, description="input")}

            def predict(self, **kwargs):
                return {"y": kwargs["x"] * self.factor}

            def get_train_args(self):
                return super().get_train_args()  # no training

            def train(self, **kwargs):
                return super().train(**kwargs)
    """

    schema: Any = None
    """The shape of ``predict``'s JSON answer, or None.

    With a schema, deepaas validates every answer against it (a mismatch is
    a 500 naming the problem) and sends the answer as the model returned it;
    ``/swagger.json`` describes it as ``ModelPredictionResponse``.  Without
    one, the answer is wrapped as ``{"status": "OK", "predictions": ...}``.

    Give either a ``marshmallow.Schema`` subclass (the class, not an
    instance) or a dict of marshmallow fields, which becomes such a class::

        from marshmallow import fields

        schema = {
            "status": fields.Str(required=True),
            "predictions": fields.List(fields.Nested({
                "label": fields.Str(required=True),
                "probability": fields.Float(required=True),
            })),
        }
    """

    @abc.abstractmethod
    def get_metadata(self) -> dict[str, Any]:
        """Describe the model: a dict shown in ``/v2/models/``.

        Common keys are ``name``, ``description``, ``author``,
        ``author-email``, ``version``, ``license``, ``url`` and ``links``
        (a list of ``{"rel": ..., "href": ...}``).  ``id`` and ``name``
        default to the entry-point name.  Every value must be JSON.
        """
        raise NotImplementedError()

    @abc.abstractmethod
    def warm(self) -> None:
        """Load what predictions need (weights, tokenizers) ahead of time.

        Called once, with no arguments, in every process that serves the
        model, before the first request reaches it.  Slow work belongs here
        rather than in ``__init__`` or at import time.
        """
        raise NotImplementedError()

    @abc.abstractmethod
    def get_predict_args(self) -> dict[str, Any]:
        """The arguments of ``predict``: a dict of marshmallow/webargs fields.

        Each key is an argument name, each value a field that converts and
        validates what the client sent; its ``description``, ``missing``
        (default) and validators show in the API description.  A field with
        ``type="file"`` receives an :class:`~deepaas.model.files.UploadedFile`.
        An ``accept`` field validated by ``OneOf`` of media types lets the
        client choose the answer's type with the ``Accept`` header::

            from webargs import fields, validate

            def get_predict_args(self):
                return {
                    "image": fields.Field(required=True, type="file",
                                          location="form",
                                          description="image to classify"),
                    "top": fields.Int(missing=5, validate=validate.Range(1, 10)),
                }
        """
        raise NotImplementedError()

    @abc.abstractmethod
    def predict(self, **kwargs: Any) -> Any:
        """Answer one request; ``kwargs`` are the converted arguments.

        Return something JSON (dict, list, str, number), or raw ``bytes`` or
        a file opened in binary mode for a non-JSON media type.  The
        signature must take every argument ``get_predict_args`` declares
        (``**kwargs`` takes them all): deepaas checks it when it loads the
        model.
        """
        raise NotImplementedError()

    @abc.abstractmethod
    def get_train_args(self) -> dict[str, Any]:
        """The arguments of ``train``, declared as in ``get_predict_args``."""
        raise NotImplementedError()

    @abc.abstractmethod
    def train(self, **kwargs: Any) -> Any:
        """Run one training; ``kwargs`` are the converted arguments.

        It runs in a process of its own and may take hours; what it returns
        (JSON) becomes the training's ``result.output``.
        """
        raise NotImplementedError()


__all__ = ["BaseModel"]
