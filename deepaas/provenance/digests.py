"""SHA-256 digests of files and bytes, streamed in chunks.

A batch may read 100,000 inputs: a digest never holds a whole file in
memory, and :func:`copy_with_digest` computes one while copying, so that a
file that is copied anyway is read once.
"""

from __future__ import annotations

import hashlib
import os

#: Bytes read at a time: large enough that the digest, not the system call,
#: is the cost; small enough to stay in the CPU's cache.
CHUNK = 1 << 20


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    """The hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of the file at ``path``, read in chunks.

    Raises :class:`OSError` (``FileNotFoundError`` among them) when the file
    cannot be read, so that a caller names the missing input.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy_with_digest(
    source: str | os.PathLike[str], target: str | os.PathLike[str]
) -> str:
    """Copy ``source`` to ``target`` (a new file) and return ``source``'s SHA-256.

    One read of the source serves both the copy and the digest.
    """
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(target, "xb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
    return digest.hexdigest()


__all__ = ["CHUNK", "copy_with_digest", "sha256_bytes", "sha256_file"]
