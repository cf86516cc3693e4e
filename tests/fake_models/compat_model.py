"""Fake models written as DEEPaaS 2.x models are: BaseModel, UploadedFile, Pools.

``Subclassed`` subclasses 2.x's ``BaseModel`` and leaves ``train`` to it;
``Spawner`` starts processes from ``predict`` the way published models do
(``multiprocessing.Pool``, ``ProcessPoolExecutor``) and can leave some
running, reporting their pids, so tests can watch them die with the server.
The ``Bad*`` models have signatures that cannot take their declared
arguments; tests register them in a distribution of their own, so that
nothing serving every installed model trips over them.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import subprocess
import sys
import time
from typing import Any

from webargs import fields

from deepaas.model.v2.base import BaseModel
from deepaas.model.v2.wrapper import UploadedFile


class Subclassed(BaseModel):
    """A 2.x class entry point that implements only what it offers."""

    def get_metadata(self) -> dict[str, Any]:
        return {"name": "subclassed", "author": "compat tests", "version": "2.0"}

    def warm(self) -> None:
        self.warmed = True

    def get_predict_args(self) -> dict[str, Any]:
        return {
            "data": fields.Field(required=True, type="file", location="form",
                                 description="any file"),
        }

    def predict(self, **kwargs: Any) -> dict[str, Any]:
        upload = kwargs["data"]
        name, filename, content_type, original_filename = upload  # unpacks
        with open(filename, "rb") as handle:
            size = len(handle.read())
        return {
            "is_v2_uploaded_file": isinstance(upload, UploadedFile),
            "is_tuple": isinstance(upload, tuple),
            "fields": list(upload._fields),
            "by_index": [upload[0], upload[2], upload[3]],
            "name": name,
            "content_type": content_type,
            "original_filename": original_filename,
            "size": size,
            "warmed": self.warmed,
        }

    def get_train_args(self) -> dict[str, Any]:
        return super().get_train_args()  # type: ignore[safe-super]

    def train(self, **kwargs: Any) -> Any:
        return super().train(**kwargs)  # type: ignore[safe-super]


def _square(x: int) -> int:
    return x * x


def _pid(_: int) -> int:
    time.sleep(0.05)  # keeps a task per pool worker, so both answer
    return os.getpid()


# Processes a ``leave`` call left running: the pool must stay referenced, or
# its finalizer would terminate the workers as soon as predict returns.
_LEFT: list[Any] = []


class Spawner:
    """Starts processes from ``predict``, as published models do."""

    def get_predict_args(self) -> dict[str, Any]:
        return {
            "how": fields.Str(required=True,
                              description="pool, executor, leave or leave-hang"),
            "pids_file": fields.Str(load_default="",
                                    description="where 'leave' writes pids"),
        }

    def predict(self, how: str, pids_file: str) -> dict[str, Any]:
        if how == "pool":
            with multiprocessing.Pool(2) as pool:
                return {"squares": pool.map(_square, range(5))}
        if how == "executor":
            with concurrent.futures.ProcessPoolExecutor(2) as executor:
                return {"squares": list(executor.map(_square, range(5)))}
        if how in ("leave", "leave-hang"):
            # A Pool left running, and a grandchild of its own (a plain
            # subprocess): both must die with the worker, however it dies.
            pool = multiprocessing.get_context("spawn").Pool(2)
            pool_pids = sorted(set(pool.map(_pid, range(8), chunksize=1)))
            sleeper = subprocess.Popen([sys.executable, "-c",
                                        "import time; time.sleep(600)"])
            _LEFT.extend([pool, sleeper])
            pids = {"worker": os.getpid(), "pool": pool_pids,
                    "subprocess": sleeper.pid}
            with open(pids_file + ".partial", "w") as handle:
                json.dump(pids, handle)
            os.replace(pids_file + ".partial", pids_file)
            if how == "leave-hang":
                time.sleep(600)
            return pids
        raise ValueError(f"unknown how {how!r}")


class BadPredictSignature:
    """``predict`` names its argument differently from its declaration."""

    def get_predict_args(self) -> dict[str, Any]:
        return {"image": fields.Str(required=True)}

    def predict(self, img: str) -> str:
        return img


class BadTrainSignature:
    """``train`` takes ``epochs``, but the field loads into ``n_epochs``."""

    def get_predict_args(self) -> dict[str, Any]:
        return {}

    def predict(self, **kwargs: Any) -> str:
        return "ok"

    def get_train_args(self) -> dict[str, Any]:
        return {"epochs": fields.Int(load_default=1, attribute="n_epochs")}

    def train(self, epochs: int = 1) -> int:
        return epochs
