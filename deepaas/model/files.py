"""The objects a model receives for file arguments, and what it may return."""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

# DEEPaaS 2.x defines UploadedFile as this namedtuple, every field defaulting
# to None: model test suites build it by keyword or position and unpack it.
_UploadedFileFields = collections.namedtuple(
    "_UploadedFileFields",
    ("name", "filename", "content_type", "original_filename"),
    defaults=(None, None, None, None),
)


class UploadedFile(_UploadedFileFields):
    """A file argument, as the model's ``predict``/``train`` receives it.

    deepaas writes every uploaded file to a temporary copy on local disk
    before calling the model, and removes that copy after the call returns
    or raises: a model that needs the data later must copy it.  The model may
    read, move, truncate or delete the copy.

    It is the namedtuple of DEEPaaS 2.x (also importable as
    ``deepaas.model.v2.wrapper.UploadedFile``): a model's own tests may build
    one by keyword or position, index it and unpack it; fields left out are
    ``None``.

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

        # in the model's tests
        predict(data=UploadedFile(name="data", filename="cat.png",
                                  content_type="image/png",
                                  original_filename="cat.png"))
    """

    __slots__ = ()

    def to_json(self) -> list[Any]:
        """What a training record shows of the upload: never the temporary path.

        DEEPaaS 2.x records an upload as ``[name, content_type,
        original_filename]`` (a namedtuple serialised to JSON), and clients
        read it by position, so the record keeps that shape.
        """
        return [self.name, self.content_type, self.original_filename]

    def remove(self) -> None:
        """Delete the temporary copy; a missing file is not an error."""
        if self.filename is None:
            return
        try:
            os.unlink(self.filename)
        except FileNotFoundError:
            pass


# -- private copies of a user's own files ------------------------------------

#: The ``FICLONE`` ioctl (linux/fs.h): a file sharing another's data blocks.
_FICLONE = 0x40049409
#: Longest name given to a copy (most filesystems allow 255 bytes).
_COPY_NAME_MAX = 200
#: Errors with which ``sendfile`` says it cannot copy these two files.
_NO_SENDFILE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSOCK}


def copy_for_model(
    source: str, directory: str, prefix: str, *, reflink: bool = True
) -> str:
    """Copy the user's file ``source`` into ``directory`` for one model call.

    The command-line tools hand a model a copy, never the user's file: the
    contract lets a model move, truncate, overwrite or delete the file it
    gets.  Where the filesystem allows it (btrfs, XFS; ``source`` and
    ``directory`` on the same one) the copy is a reflink: a new file sharing
    the data blocks copy-on-write, made without copying data, whose changes
    never reach the original.  A hard link would not do: it is the same
    file, so truncating or rewriting it changes the user's.  Elsewhere the
    bytes are copied inside the kernel (``sendfile``).

    Returns the copy's path, ``directory/<prefix>-<name of source>``: the
    extension is kept for models that look at it; the caller chooses a
    ``prefix`` unique within ``directory`` and removes the copy.  With
    ``reflink=False`` (see :func:`can_reflink`) no reflink is tried.
    """
    name = f"{prefix}-{os.path.basename(source)}"
    if len(os.fsencode(name)) > _COPY_NAME_MAX:
        extension = os.path.splitext(name)[1]
        name = prefix + (extension if len(extension) <= 20 else "")
    target = os.path.join(directory, name)
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )
        try:
            _copy_data(src, dst, reflink)
        except BaseException:
            os.unlink(target)
            raise
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return target


def can_reflink(source: str, directory: str) -> bool:
    """Whether a copy of ``source`` in ``directory`` can be a reflink.

    Tries once (a probe file, removed), so that a tool copying many files
    from one folder does not try, and fail, for each of them.
    """
    fd, probe = tempfile.mkstemp(prefix=".reflink-probe-", dir=directory)
    try:
        with open(source, "rb") as src:
            fcntl.ioctl(fd, _FICLONE, src.fileno())
    except OSError:
        return False
    finally:
        os.close(fd)
        os.unlink(probe)
    return True


def _copy_data(src: int, dst: int, reflink: bool = True) -> None:
    if reflink:
        try:
            fcntl.ioctl(dst, _FICLONE, src)
            return
        except OSError:
            pass  # no reflinks here (ext4, tmpfs, two filesystems): copy bytes
    offset = 0
    try:
        while sent := os.sendfile(dst, src, offset, 1 << 30):
            offset += sent
        return
    except OSError as exc:
        if offset or exc.errno not in _NO_SENDFILE:
            raise
    while chunk := os.read(src, 1 << 20):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view) :]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_folders(base: str, prefix: str) -> list[str]:
    """Remove this user's folders ``<prefix><pid>-*`` in ``base`` whose
    process is gone; returns them.

    A process killed outright (SIGKILL, or a model's segfault when it runs
    in the process) cannot remove its temporary folder; the folder's name
    holds the host (in ``prefix``) and the pid, so the next run on the host
    removes it once no process has that pid.
    """
    removed: list[str] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid = entry.name[len(prefix) :].split("-", 1)[0]
        try:
            mine = entry.is_dir(follow_symlinks=False) and (
                entry.stat(follow_symlinks=False).st_uid == os.getuid()
            )
        except OSError:
            continue
        if mine and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def owned_temp_folder(tool: str) -> str:
    """A new temporary folder of this process, for ``tool``'s copies.

    Named ``deepaas-<tool>-<host>-<pid>-<random>``: the stale folders of
    the same tool on this host, left by processes that died before they
    could remove theirs, are removed first (:func:`remove_stale_folders`).
    """
    base = tempfile.gettempdir()
    prefix = f"deepaas-{tool}-{os.uname().nodename}-"
    remove_stale_folders(base, prefix)
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=base)


@contextlib.contextmanager
def private_copies(arguments: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """``arguments`` with each :class:`UploadedFile` pointing at its own copy.

    For a tool that was given the user's own files (``deepaas-cli``): the
    copies (see :func:`copy_for_model`) live in a new temporary folder that
    is removed, with whatever the model left in it, when the block ends,
    whether the call returned or raised; if the process dies first (a
    model that segfaults), by the next ``deepaas-cli`` on the host.
    """
    directory = owned_temp_folder("cli")
    try:
        copied: dict[str, Any] = {}
        for key, value in arguments.items():
            if isinstance(value, UploadedFile) and value.filename:
                value = UploadedFile(
                    name=value.name,
                    filename=copy_for_model(value.filename, directory, key),
                    content_type=value.content_type,
                    original_filename=value.original_filename,
                )
            copied[key] = value
        yield copied
    finally:
        shutil.rmtree(directory, ignore_errors=True)
