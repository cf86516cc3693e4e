"""What crosses the socket between a parent and its child process.

Messages are tuples, pickled (protocol 5) and framed by a 4-byte big-endian
length, so that the API process can read them with an asyncio protocol (one
``data_received`` may carry several answers: no poll/recv syscall pair per
message) and a worker with a plain blocking socket.

Exceptions do not pickle faithfully when their ``__init__`` takes other
arguments than their message, so errors travel as plain tuples.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import traceback
from collections.abc import Callable
from typing import Any

from deepaas import exceptions

WireError = tuple[str, str, dict[str, Any]]

_HEADER = 4
_PROTOCOL = pickle.HIGHEST_PROTOCOL


def encode(message: Any) -> bytes:
    """One framed message, ready to write."""
    payload = pickle.dumps(message, protocol=_PROTOCOL)
    return len(payload).to_bytes(_HEADER, "big") + payload


class MessageReader(asyncio.Protocol):
    """The API process's end of a worker socket: frames in, messages out."""

    def __init__(
        self,
        on_message: Callable[[Any], None],
        on_closed: Callable[[], None],
    ) -> None:
        self._on_message = on_message
        self._on_closed = on_closed
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        end = len(buffer)
        while end - start >= _HEADER:
            size = int.from_bytes(buffer[start : start + _HEADER], "big")
            stop = start + _HEADER + size
            if stop > end:
                break
            # The peer is our own worker or API process over a socketpair.
            message = pickle.loads(buffer[start + _HEADER : stop])  # noqa: S301
            start = stop
            self._on_message(message)
        if start:
            del buffer[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._on_closed()

    def send(self, message: Any) -> bool:
        """Write one message; False when the worker is gone."""
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(encode(message))
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class BlockingChannel:
    """A worker's end of the socket: blocking reads and writes."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self._sock = sock
        self._reader = sock.makefile("rb", buffering=1 << 16)

    def recv(self) -> Any:
        """The next message; EOFError when the API process is gone."""
        header = self._reader.read(_HEADER)
        if len(header) < _HEADER:
            raise EOFError("the API process closed the connection")
        size = int.from_bytes(header, "big")
        payload = self._reader.read(size)
        if len(payload) < size:
            raise EOFError("the API process closed the connection")
        return pickle.loads(payload)  # noqa: S301 (our own peer process)

    def send(self, message: Any) -> None:
        self._sock.sendall(encode(message))


def error_to_wire(exc: exceptions.DeepaasError) -> WireError:
    """Flatten a domain error into a picklable tuple."""
    extra: dict[str, Any] = {}
    if isinstance(exc, exceptions.ArgumentsInvalid):
        extra["errors"] = exc.errors
    if isinstance(exc, exceptions.ModelError):
        extra["traceback"] = exc.traceback
    if isinstance(exc, exceptions.ModelHTTPError):
        extra["status"] = exc.status
    return (type(exc).__name__, exc.message, extra)


def error_from_wire(wire: WireError) -> exceptions.DeepaasError:
    """Rebuild the domain error a worker sent."""
    name, message, extra = wire
    cls = getattr(exceptions, name, None)
    if cls is exceptions.ArgumentsInvalid:
        return exceptions.ArgumentsInvalid(extra.get("errors", {}))
    if cls is exceptions.ModelHTTPError:
        return exceptions.ModelHTTPError(
            message,
            status=extra.get("status", 500),
            traceback=extra.get("traceback", ""),
        )
    if isinstance(cls, type) and issubclass(cls, exceptions.ModelError):
        # ModelError and its kinds that take no more (GpuOutOfMemory).
        return cls(message, traceback=extra.get("traceback", ""))
    if isinstance(cls, type) and issubclass(cls, exceptions.DeepaasError):
        return cls(message)
    return exceptions.DeepaasError(message)


def start_error(
    name: str, exc: BaseException, *, named: bool = True
) -> tuple[WireError, str]:
    """A child's start-up failure: a load error naming the model (and why),
    with the traceback for the parent's log.

    ``named=False``: the load error says only why (the parent names the
    model itself, as the batch pool does).
    """
    if isinstance(exc, (exceptions.ModelLoadError, exceptions.DeviceUnavailable)):
        error: exceptions.DeepaasError = exc
    else:
        reason = (
            exc.message
            if isinstance(exc, exceptions.DeepaasError)
            else f"{type(exc).__name__}: {exc}"
        )
        if named:
            reason = f"model {name!r} could not start: {reason}"
        error = exceptions.ModelLoadError(reason)
    return error_to_wire(error), "".join(traceback.format_exception(exc))


def is_wire_error(value: Any) -> bool:
    """Whether ``value`` is an error tuple rather than an answer."""
    return (
        isinstance(value, tuple)
        and len(value) == 3
        and isinstance(value[0], str)
        and isinstance(value[2], dict)
    )
