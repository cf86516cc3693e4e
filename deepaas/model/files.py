"""The objects a model receives for file arguments, and what it may return."""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class UploadedFile:
    """A file argument, as the model's ``predict``/``train`` receives it.

    deepaas writes every uploaded file to a temporary copy on local disk
    before calling the model, and removes that copy after the call returns
    or raises: a model that needs the data later must copy it.

    Attributes:
        name: the argument name, e.g. ``"data"``.
        filename: path of the temporary copy on local disk.
        content_type: the media type the client sent, e.g. ``"image/png"``.
        original_filename: the file's name on the client's side.

    Example::

        def predict(data, **kwargs):
            with open(data.filename, "rb") as f:
                image = f.read()
            return {"name": data.original_filename, "bytes": len(image)}
    """

    name: str
    filename: str
    content_type: str = "application/octet-stream"
    original_filename: str = ""

    def to_json(self) -> dict[str, str]:
        """What is recorded of the upload (never the temporary path)."""
        return {
            "name": self.name,
            "content_type": self.content_type,
            "original_filename": self.original_filename,
        }

    def remove(self) -> None:
        """Delete the temporary copy; a missing file is not an error."""
        try:
            os.unlink(self.filename)
        except FileNotFoundError:
            pass
