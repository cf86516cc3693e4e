"""One predict call per input, with the arguments every input shares parsed once.

A batch calls ``predict`` with the same fixed arguments (``--arg``) for
every input, only the file changes.  Parsing all of them with the model's
fields for each input costs about as much as a small model's own work, so
:class:`PredictCall` parses the first input's arguments in full and, when
the file argument's field does no conversion or validation of its own (a
plain ``fields.Field``/``fields.Raw``, as models declare file arguments),
reuses those parsed arguments for the next inputs with only the file
swapped.  Anything else (JSON Lines inputs, fields with validators, fixed
file arguments) is parsed in full every time.

Every file an input brings is its own temporary copy (made and, once the
answer is recorded, removed by the batch process: see
:mod:`deepaas.batch.copies`): the model may move, truncate or delete it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from marshmallow import fields

from deepaas.exceptions import DeepaasError
from deepaas.model.files import UploadedFile
from deepaas.model.wrapper import (
    ModelWrapper,
    PredictOutcome,
    RawArguments,
    model_error,
)


class PredictCall:
    """Calls a wrapped model's predict for one input after another."""

    def __init__(
        self,
        wrapper: ModelWrapper,
        *,
        fixed: RawArguments,
        file_arg: str | None,
        accept: str | None,
    ) -> None:
        self.wrapper = wrapper
        self.fixed = fixed
        self.file_arg = file_arg
        self.accept = accept
        self._template: dict[str, Any] | None = None
        field = wrapper.predict_schema.fields.get(file_arg) if file_arg else None
        self._reusable = (
            field is not None
            and type(field) in (fields.Field, fields.Raw)
            and not field.validators
        )

    def file(
        self,
        path: str,
        content_type: str,
        original_filename: str,
        others: Sequence[tuple[str, str, str, str]] = (),
    ) -> PredictOutcome:
        """Predict for an input file; ``path`` is the input's own copy.

        ``others`` are the copies of fixed file arguments, as ``(name,
        path, media type, original name)``.
        """
        assert self.file_arg is not None
        upload = UploadedFile(
            name=self.file_arg,
            filename=path,
            content_type=content_type,
            original_filename=original_filename,
        )
        extra = [
            UploadedFile(
                name=name,
                filename=other,
                content_type=media,
                original_filename=original,
            )
            for name, other, media, original in others
        ]
        try:
            if self._template is None or extra:
                raw = RawArguments(
                    pairs=[
                        *self.fixed.pairs,
                        (self.file_arg, upload),
                        *((u.name, u) for u in extra),
                    ],
                    json_body=self.fixed.json_body,
                )
                kwargs = self.wrapper.parse_predict_args(raw, self.accept)
                if self._reusable and not extra:
                    self._template = {
                        k: v for k, v in kwargs.items() if k != self.file_arg
                    }
            else:
                kwargs = {
                    k: copy.deepcopy(v) if isinstance(v, (list, dict, set)) else v
                    for k, v in self._template.items()
                }
                kwargs[self.file_arg] = upload
            chosen = kwargs.get("accept", self.accept)
            return self.wrapper.finish_predict(
                self.wrapper.call("predict", kwargs), chosen
            )
        except DeepaasError:
            raise
        except Exception as exc:  # e.g. a returned file that cannot be read
            raise model_error(exc) from exc

    def raw(self, raw: RawArguments) -> PredictOutcome:
        """Predict for arguments given in full (a JSON Lines input)."""
        try:
            return self.wrapper.run_predict(raw, self.accept)
        except DeepaasError:
            raise
        except Exception as exc:
            raise model_error(exc) from exc
