"""What a record says about where a result came from: model, host, devices.

Everything here is read from what is installed and from the environment,
without importing the model: the model's distribution is found through its
entry point (or the top-level package of its import target), and the
digest of its installed files is a SHA-256 of the distribution's ``RECORD``
file, which already lists a SHA-256 of every installed file: one small
read instead of hashing the whole package.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import os
import platform
import socket
from collections.abc import Mapping
from typing import Any

from deepaas import __version__
from deepaas.provenance.digests import sha256_bytes

#: The entry-point group of DEEPaaS V2 models.
MODEL_NAMESPACE = "deepaas.v2.model"


@dataclasses.dataclass(frozen=True)
class ModelPackage:
    """The model as installed: what a later reader needs to find it again.

    ``files_sha256`` is a SHA-256 of the distribution's ``RECORD`` file (None
    when the distribution has none, e.g. an editable or source-tree install
    without it): two installs with the same value hold the same files.
    """

    #: The name the model is served under.
    name: str
    #: The entry point, as ``"name = module:attribute"`` (or the import target).
    entry_point: str
    #: The distribution that provides it, and its version (None when unknown).
    package: str | None = None
    package_version: str | None = None
    files_sha256: str | None = None
    #: ``version`` from the model's own metadata, when it declares one.
    model_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The package as a JSON object (keys as the fields)."""
        return dataclasses.asdict(self)


def model_package(
    name: str,
    target: str,
    *,
    namespace: str | None = MODEL_NAMESPACE,
    model_version: str | None = None,
) -> ModelPackage:
    """The installed package of the model served as ``name`` from ``target``.

    ``target`` is the entry-point value (``"pkg.module:attr"``).  The
    distribution is the one that declares that entry point in ``namespace``;
    failing that, the one that provides ``target``'s top-level package.
    """
    dist = _distribution(name, target, namespace)
    entry = f"{name} = {target}"
    if dist is None:
        return ModelPackage(name=name, entry_point=entry, model_version=model_version)
    return ModelPackage(
        name=name,
        entry_point=entry,
        package=dist.metadata["Name"],
        package_version=dist.version,
        files_sha256=record_digest(dist),
        model_version=model_version,
    )


def _distribution(
    name: str, target: str, namespace: str | None
) -> importlib.metadata.Distribution | None:
    if namespace:
        for entry in importlib.metadata.entry_points(group=namespace):
            if entry.name == name and entry.value == target and entry.dist:
                return entry.dist
    top = target.split(":", 1)[0].split(".", 1)[0]
    names = _packages_distributions().get(top) or []
    for dist_name in names:
        try:
            return importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


@functools.cache
def _packages_distributions() -> Mapping[str, list[str]]:
    # Walks every installed distribution once: cached per process.
    return importlib.metadata.packages_distributions()


def record_digest(dist: importlib.metadata.Distribution) -> str | None:
    """A SHA-256 of ``dist``'s ``RECORD`` file; None when it has none."""
    text = dist.read_text("RECORD")
    if text is None:
        return None
    return sha256_bytes(text.encode())


def deepaas_version() -> str:
    """The version of deepaas itself."""
    return __version__


@dataclasses.dataclass(frozen=True)
class Host:
    """The machine a call ran on."""

    hostname: str
    platform: str
    python: str
    #: SLURM's job id when the call ran inside a SLURM job.
    slurm_job: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def this_host(environ: Mapping[str, str] | None = None) -> Host:
    """This machine (and SLURM job, if any)."""
    env = os.environ if environ is None else environ
    job = env.get("SLURM_JOB_ID")
    array = env.get("SLURM_ARRAY_JOB_ID")
    if array and env.get("SLURM_ARRAY_TASK_ID"):
        job = f"{array}_{env['SLURM_ARRAY_TASK_ID']}"
    return Host(
        hostname=socket.gethostname(),
        platform=platform.platform(),
        python=platform.python_version(),
        slurm_job=job,
    )


#: ``CUDA_VISIBLE_DEVICES`` values that mean no GPU.
_NO_GPU = {"", "-1", "none", "nodevfiles"}


def visible_devices(environ: Mapping[str, str] | None = None) -> list[str]:
    """The devices this process may compute on, as the environment says.

    ``["cpu"]`` plus one ``"gpu:<token>"`` for each entry of
    ``CUDA_VISIBLE_DEVICES`` (else of SLURM's ``SLURM_JOB_GPUS``); the
    token is what the variable holds (an index or a GPU UUID).
    """
    env = os.environ if environ is None else environ
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        listed = env.get("SLURM_JOB_GPUS", "")
    if listed.strip().lower() in _NO_GPU:
        return ["cpu"]
    tokens = [token.strip() for token in listed.split(",") if token.strip()]
    return ["cpu", *(f"gpu:{token}" for token in tokens)]


__all__ = [
    "MODEL_NAMESPACE",
    "Host",
    "ModelPackage",
    "deepaas_version",
    "model_package",
    "record_digest",
    "this_host",
    "visible_devices",
]
