"""Models for the batch tests: what each input holds decides what happens.

``Reader`` reads its input file: ``fail ...`` raises, ``crash`` kills the
worker process, ``sleep S`` sleeps S seconds; anything else is answered
(JSON, or text/plain through ``accept``).
"""

import contextlib
import os
import shutil
import tempfile
import time

from marshmallow import fields, validate


class Reader:
    def get_metadata(self):
        return {"name": "batch-reader", "description": "reads text inputs"}

    def get_predict_args(self):
        return {
            "data": fields.Raw(
                required=True,
                metadata={
                    "type": "file",
                    "location": "form",
                    "description": "a text file",
                },
            ),
            "scale": fields.Int(
                load_default=1,
                validate=validate.Range(min=1),
                metadata={"description": "multiplies the length"},
            ),
            "tags": fields.List(fields.Str(), load_default=[]),
            "accept": fields.Str(
                load_default="application/json",
                validate=validate.OneOf(["application/json", "text/plain"]),
            ),
        }

    def predict(self, data, scale, tags, accept):
        with open(data.filename, encoding="utf-8") as handle:
            text = handle.read()
        if text.startswith("fail"):
            raise ValueError(f"cannot read {data.original_filename}")
        if text.startswith("crash"):
            os._exit(7)
        if text.startswith("sleep"):
            time.sleep(float(text.split()[1]))
        if accept == "text/plain":
            return f"{data.original_filename}:{len(text) * scale}\n"
        return {
            "name": data.original_filename,
            "length": len(text) * scale,
            "tags": tags,
            "pid": os.getpid(),
            "path": data.filename,
        }


class TwoFiles:
    def get_predict_args(self):
        return {
            "left": fields.Raw(required=True, metadata={"type": "file"}),
            "right": fields.Raw(required=False, metadata={"type": "file"}),
        }

    def predict(self, left, right=None):
        return {
            "left": left.original_filename,
            "right": right.original_filename if right else None,
        }


class GpuReader(Reader):
    resources = {"gpus": 1}


class GpuPreferringReader(Reader):
    """Runs on a GPU when it gets one, else on the CPU."""

    resources = {"gpus": 1, "gpu": "preferred"}


class TwoGpuReader(Reader):
    resources = {"gpus": 2}


class Divide:
    """No file argument: for --input-jsonl."""

    def get_predict_args(self):
        return {
            "a": fields.Float(required=True),
            "b": fields.Float(load_default=1.0),
            "digits": fields.Int(load_default=3),
        }

    def predict(self, a, b, digits):
        return round(a / b, digits)


class Harmful:
    """Reads its input, then deletes, truncates, overwrites or moves it.

    The contract allows that: the file is a temporary copy the framework
    owns.  ``action`` chooses what to do; the answer says what was read.
    Its version is ``$BATCH_HARMFUL_VERSION`` (default 1.0).
    """

    def get_metadata(self):
        return {
            "name": "batch-harmful",
            "version": os.environ.get("BATCH_HARMFUL_VERSION", "1.0"),
        }

    def get_predict_args(self):
        return {
            "data": fields.Raw(required=True, metadata={"type": "file"}),
            "action": fields.Str(
                load_default="delete",
                validate=validate.OneOf(["delete", "truncate", "overwrite", "move"]),
            ),
        }

    def predict(self, data, action):
        return read_then_harm(data, action)


def read_then_harm(upload, action):
    """Read the file ``upload`` names, then do ``action`` to it; say what was read."""
    with open(upload.filename, "rb") as handle:
        size = len(handle.read())
    if action == "delete":
        os.remove(upload.filename)
    elif action == "truncate":
        os.truncate(upload.filename, 0)
    elif action == "overwrite":
        with open(upload.filename, "r+b") as handle:
            handle.write(b"overwritten by the model")
    else:
        os.rename(upload.filename, upload.filename + ".moved")
    return {"name": upload.original_filename, "size": size, "path": upload.filename}


class HarmfulPair:
    """Two file arguments, each read and then deleted, truncated, overwritten
    or moved (``action``), as :class:`Harmful` does with its one."""

    def get_predict_args(self):
        return {
            "data": fields.Raw(required=True, metadata={"type": "file"}),
            "mask": fields.Raw(required=True, metadata={"type": "file"}),
            "action": fields.Str(
                load_default="delete",
                validate=validate.OneOf(["delete", "truncate", "overwrite", "move"]),
            ),
        }

    def predict(self, data, mask, action):
        return {
            "data": read_then_harm(data, action),
            "mask": read_then_harm(mask, action),
        }


class Segfaulting:
    """For --input-jsonl: ``crash`` kills the process with SIGSEGV; ``data``
    is an optional file, answered with its size."""

    def get_predict_args(self):
        return {
            "n": fields.Int(required=True),
            "crash": fields.Bool(load_default=False),
            "data": fields.Raw(required=False, metadata={"type": "file"}),
        }

    def predict(self, n, crash, data=None):
        if crash:
            import signal

            os.kill(os.getpid(), signal.SIGSEGV)
        size = os.path.getsize(data.filename) if data is not None else None
        return {"n": n, "size": size}


class CopyWatcher:
    """Says, at each call, what copies lie beside its input; may wipe them.

    ``wipe`` chooses what it removes after reading its input: ``"none"``,
    ``"folder"`` (the folder holding its copy, with whatever is in it) or
    ``"tmpdir"`` (everything in :func:`tempfile.gettempdir`, as a careless
    clean-up would).  ``pause`` makes each call last that many seconds more.
    """

    def get_metadata(self):
        return {"name": "batch-copies"}

    def get_predict_args(self):
        return {
            "data": fields.Raw(required=True, metadata={"type": "file"}),
            "wipe": fields.Str(
                load_default="none",
                validate=validate.OneOf(["none", "folder", "tmpdir"]),
            ),
            "pause": fields.Float(load_default=0.0),
        }

    def predict(self, data, wipe, pause):
        time.sleep(pause)
        with open(data.filename, "rb") as handle:
            size = len(handle.read())
        folder = os.path.dirname(data.filename)
        copies, held = 0, 0
        for entry in os.scandir(folder):
            if entry.name.startswith("."):  # a probe, not a copy
                continue
            with contextlib.suppress(OSError):  # removed while looking
                held += entry.stat().st_size
                copies += 1
        if wipe == "folder":
            shutil.rmtree(folder, ignore_errors=True)
        elif wipe == "tmpdir":
            for entry in os.scandir(tempfile.gettempdir()):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
        return {"size": size, "copies": copies, "bytes": held}
