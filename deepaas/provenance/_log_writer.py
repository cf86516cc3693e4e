"""The process that formats and appends the prediction log's records.

``deepaas-run --provenance-log`` runs this file as a child process (Python
standard library only, started with ``-I -S``: nothing of deepaas or of
site-packages is imported, so it starts in milliseconds).  The server's
writer thread sends it batches of what each answer was made of; here each
becomes one PROV-JSON line (digests, timestamps, a string template) and
every batch is appended with a few ``writev`` calls.  Formatting a record
costs a few microseconds of Python; done in the server's process it
measurably slowed the event loop (both threads share one interpreter lock),
done here it runs beside it.

Frames on standard input: a 4-byte big-endian length, then a pickled list
of ``(model, start, end, arguments as canonical JSON, body or (sha256,
size), media type, uploads' digests or None)`` tuples.  The pipe is
private to the server that started this process.  End of input: exit.
"""

from __future__ import annotations

import datetime
import json
import os
import pickle
import signal
import struct
import sys
from hashlib import sha256
from json.encoder import (  # type: ignore[attr-defined]
    c_make_encoder,
    encode_basestring_ascii,
)
from typing import Any, BinaryIO

#: The namespace of deepaas's PROV terms (as deepaas.provenance.record has it).
NAMESPACE = "urn:deepaas:provenance:"
#: Lines handed to one writev() (within every system's IOV_MAX).
_IOV = 1000
_UTC = datetime.timezone.utc
_HEADER = struct.Struct(">I")
_quote = encode_basestring_ascii
_Q = '{"$":"deepaas:%s","type":"prov:QUALIFIED_NAME"}'
# One prediction's document, filled in this order: activity, start, end,
# activity (arguments), arguments, their digest, activity (output), its
# digest, size, media type, input entities, activity + model (used),
# activity x2 (used arguments), used inputs, activity x2 (generated),
# activity + server + model (associated).  Only deepaas's prefix is
# declared: prov: is predefined.
_LINE = (
    '{"prefix":{"deepaas":"' + NAMESPACE + '"},"activity":{"%s":{'
    '"prov:type":' + _Q % "Prediction" + ","
    '"prov:startTime":"%s","prov:endTime":"%s","deepaas:outcome":"done"}},'
    '"entity":{"%s/arguments":{"prov:type":' + _Q % "Arguments" + ","
    '"prov:value":%s,"deepaas:sha256":"%s"},'
    '"%s/output/0":{"prov:type":' + _Q % "Output" + ","
    '"deepaas:sha256":"%s","deepaas:size":%d,'
    '"deepaas:mediaType":%s}%s},'
    '"used":{"_:m":{"prov:activity":"%s","prov:entity":"deepaas:model/%s"},'
    '"_:a":{"prov:activity":"%s","prov:entity":"%s/arguments"}%s},'
    '"wasGeneratedBy":{"_:g":{"prov:entity":"%s/output/0","prov:activity":"%s"}},'
    '"wasAssociatedWith":{"_:w":{"prov:activity":"%s",'
    '"prov:agent":"deepaas:server/%s","prov:plan":"deepaas:model/%s"}}}\n'
)


def _canonical_encoder() -> Any:
    """Canonical JSON (sorted keys, no spaces, ASCII), made once."""
    if c_make_encoder is None:  # pragma: no cover - an interpreter without _json
        encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
        return encoder.encode
    make = c_make_encoder(
        None, str, encode_basestring_ascii, None, ":", ",", True, False, True
    )
    return lambda value: "".join(make(value, 0))


canonical_json = _canonical_encoder()


class Formatter:
    """Turns what an answer was made of into its PROV-JSON line."""

    def __init__(self, server_id: str) -> None:
        self.server_id = server_id
        self._count = 0
        self._last = (-1, "")

    def _time(self, moment: float) -> str:
        whole = int(moment)
        second, text = self._last
        if whole != second:
            stamp = datetime.datetime.fromtimestamp(whole, _UTC)
            text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
            self._last = (whole, text)
        return f"{text}.{int((moment - whole) * 1e6):06d}+00:00"

    def line(
        self,
        model: str,
        start: float,
        end: float,
        args: str,
        body: bytes | tuple[str, int],
        media_type: str,
        uploads: tuple[tuple[str, str], ...] | None,
    ) -> bytes:
        """One answer's PROV-JSON document, as a line of UTF-8.

        ``args`` is the arguments' canonical JSON (:data:`canonical_json`).
        """
        self._count += 1
        activity = f"deepaas:prediction/{self.server_id}-{self._count}"
        inputs = used = ""
        for number, (name, digest) in enumerate(uploads or ()):
            key = f"{activity}/input/{number}"
            inputs += (
                f',"{key}":{{"prov:type":{_Q % "Input"},'
                f'"prov:label":{_quote(name)},"deepaas:sha256":"{digest}"}}'
            )
            used += (
                f',"_:i{number}":{{"prov:activity":"{activity}","prov:entity":"{key}"}}'
            )
        if isinstance(body, tuple):  # a large answer, hashed by the server
            digest, size = body
        else:
            digest, size = sha256(body).hexdigest(), len(body)
        line = _LINE % (
            activity,
            self._time(start),
            self._time(end),
            activity,
            _quote(args),
            sha256(args.encode()).hexdigest(),
            activity,
            digest,
            size,
            _quote(media_type),
            inputs,
            activity,
            model,
            activity,
            activity,
            used,
            activity,
            activity,
            activity,
            self.server_id,
            model,
        )
        return line.encode()


def append(path: str, lines: list[bytes]) -> None:
    """Append ``lines`` to ``path``: a few writev() calls, no large copy."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for first in range(0, len(lines), _IOV):
            chunk = lines[first : first + _IOV]
            written = os.writev(fd, chunk)
            if written < sum(map(len, chunk)):  # a short write: rare
                os.write(fd, b"".join(chunk)[written:])
    finally:
        os.close(fd)


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next frame's payload; None at the end of the input."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    return payload if len(payload) == size else None


def frame(batch: list[tuple[Any, ...]]) -> bytes:
    """A batch as one frame for :func:`read_frame`."""
    payload = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


def main(argv: list[str]) -> int:
    """``_log_writer.py PATH SERVER_ID``: format and append until input ends."""
    path, server_id = argv
    # Ctrl-C in a terminal, or a stop sent to the whole process group, must
    # not lose the last records: the server closes the pipe when it stops
    # (or dies), and the end of input ends this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The lowest priority: the records wait (in the pipe) while the server
    # and its workers need every core, and are written in the idle moments.
    try:
        os.nice(19)
    except OSError:
        pass
    formatter = Formatter(server_id)
    stdin = sys.stdin.buffer
    while (payload := read_frame(stdin)) is not None:
        # Written by the server that started this process, on a private pipe.
        batch = pickle.loads(payload)  # noqa: S301
        append(path, [formatter.line(*item) for item in batch])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
