"""Reading call arguments from a request: query, forms, JSON and uploads.

Uploaded files are streamed to temporary files (never held in memory) and
handed to the model as :class:`~deepaas.model.files.UploadedFile`; the
caller removes them after the call with :func:`remove_uploads`.

Two limits apply, both answered 413 in JSON before anything is parsed when
the declared length is already too large: ``--client-max-size`` for what is
held in memory (a JSON or url-encoded body, the text fields of a multipart
body: parsing takes about four times their size) and ``--upload-max-size``
for a whole multipart body, whose files go to disk.  A third,
``--max-form-parts``, bounds how many parts a multipart body (files and
fields together) and how many fields a url-encoded form may have: every
part costs a temporary file or a parsed value whatever its size, so a small
body of many empty parts would otherwise keep the server busy for long.

Upload files are created and written in the event loop's default executor,
one write after the other per request (:class:`_Writer`), in batches of up
to :data:`WRITE_BATCH` bytes: creating and writing a file may wait on the
disk, and no other request may wait with it.  The event loop goes on
reading the body meanwhile, so the parts beyond ``--max-form-parts`` are
found without waiting for the files before them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import tempfile
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from deepaas.api.protocol import BodyReadTimeout
from deepaas.exceptions import InvalidJsonBody
from deepaas.model.description import ArgumentSpec
from deepaas.model.files import UploadedFile
from deepaas.model.wrapper import RawArguments

CHUNK = 256 * 1024
# What aiohttp's multipart reader raises on a body that breaks the format
# (e.g. InvalidHeader for a garbled part header).
_MALFORMED = (ValueError, AssertionError, KeyError, HttpProcessingError)
JSON_TYPES = ("application/json",)
FORM_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data"
#: Deepest nesting of lists and objects accepted in a JSON body: arguments
#: are never deeper, and much deeper values cannot be pickled to a worker.
MAX_JSON_DEPTH = 100
#: Most parts of a multipart body (files and fields) and fields of a
#: url-encoded form: forms that models take have a handful.
DEFAULT_MAX_FORM_PARTS = 1000
#: The server's ``--max-form-parts`` (0: no limit); set by ``create_app``.
MAX_FORM_PARTS = web.AppKey("deepaas_max_form_parts", int)
#: Bytes of an upload gathered before one write in the thread: fewer
#: hand-overs, and a bounded buffer per upload in progress.
WRITE_BATCH = 1024 * 1024
#: What a request may have queued for its writer thread before the event
#: loop waits for it: bytes, and writes (an empty file is one write).
WRITE_QUEUE_BYTES = 4 * WRITE_BATCH
WRITE_QUEUE_JOBS = 1024


def _too_large(limit: int, option: str = "--client-max-size") -> web.HTTPException:
    what = "multipart body" if option == "--upload-max-size" else "request body"
    exc = web.HTTPRequestEntityTooLarge(
        max_size=limit,
        actual_size=limit + 1,
        text=f"the {what} is larger than {option} ({limit} bytes)",
    )
    exc.force_close()  # the rest of the body is not worth reading
    return exc


def _too_many_parts(limit: int, *, multipart: bool) -> web.HTTPException:
    what = (
        f"the multipart body has more than {limit} parts, files and fields together"
        if multipart
        else f"the form has more than {limit} fields"
    )
    exc = web.HTTPRequestEntityTooLarge(
        max_size=limit, actual_size=limit + 1, text=f"{what} (--max-form-parts)"
    )
    exc.force_close()  # stop reading: the rest is more of the same
    return exc


def remove_uploads(raw: RawArguments) -> None:
    """Delete the temporary copies of every uploaded file."""
    if not raw.pairs:
        return
    for upload in raw.uploads():
        upload.remove()


def add_header_arguments(
    request: web.Request,
    raw: RawArguments,
    args: list[ArgumentSpec],
    *,
    negotiated: bool,
) -> None:
    """Take arguments declared ``location="headers"`` from the request's headers.

    A value sent in the query, form or JSON body wins.  With ``negotiated``
    the ``Accept`` header is left to content negotiation (predict with
    ``accept`` choices); otherwise it is the argument's value as sent, as
    DEEPaaS 2.x read it (e.g. an ``accept`` training argument).
    """
    given: set[str] | None = None
    for arg in args:
        if arg.location != "header":
            continue
        name = arg.name
        if (negotiated and name.lower() == "accept") or name not in request.headers:
            continue
        if given is None:
            given = {key for key, _ in raw.pairs} | set(raw.json_body or {})
        if name not in given:
            raw.pairs.append((name, request.headers[name]))


async def read_arguments(
    request: web.Request,
    *,
    max_size: int,
    upload_max_size: int,
    upload_dir: str | None,
) -> RawArguments:
    """Collect the raw arguments of a predict or train call.

    ``max_size`` bounds what is held in memory, ``upload_max_size`` a whole
    multipart body (0: no limit); past either the answer is 413, as past the
    application's ``--max-form-parts`` (:data:`MAX_FORM_PARTS`).
    """
    query = request.query.items() if request.query_string else ()
    raw = RawArguments(pairs=list(query))
    if not request.body_exists:
        return raw
    content_type = request.content_type
    multipart = content_type == MULTIPART_TYPE
    if multipart:
        limit, option = upload_max_size, "--upload-max-size"
    else:
        limit, option = max_size, "--client-max-size"
    # The declared length as sent (aiohttp refused a malformed one already):
    # cheaper than its content_length property, which parses it anew.
    length = request.headers.get(hdrs.CONTENT_LENGTH)
    if limit and length is not None and int(length) > limit:
        raise _too_large(limit, option)
    try:
        if multipart:
            await _read_multipart(request, raw, max_size, upload_max_size, upload_dir)
        elif content_type == FORM_TYPE:
            raw.pairs.extend(await _read_form(request, max_size))
        elif content_type in JSON_TYPES or content_type.endswith("+json"):
            raw.json_body = await _read_json(request, max_size)
        elif content_type in ("", "application/octet-stream"):
            if await request.read():
                raise web.HTTPUnsupportedMediaType(
                    text="send arguments as a query string, a form, multipart "
                    "form-data or a JSON object"
                )
        else:
            raise web.HTTPUnsupportedMediaType(
                text=f"unsupported request body type {content_type!r}; send "
                "multipart/form-data, application/x-www-form-urlencoded or "
                "application/json"
            )
    except BodyReadTimeout as exc:
        remove_uploads(raw)
        raise web.HTTPRequestTimeout(text=str(exc)) from None
    except BaseException:
        remove_uploads(raw)
        raise
    return raw


async def _read_form(request: web.Request, max_size: int) -> list[tuple[str, str]]:
    """The fields of a url-encoded body, counted before they are parsed.

    Parsed here rather than by ``request.post()``: its field limit exists
    only in recent aiohttp versions, with a default of its own.
    """
    try:
        body = (await request.read()).rstrip()
    except web.HTTPRequestEntityTooLarge:  # a chunked body, counted
        raise _too_large(max_size) from None
    if not body:
        return []
    max_fields = request.app.get(MAX_FORM_PARTS, DEFAULT_MAX_FORM_PARTS)
    if max_fields and body.count(b"&") >= max_fields:
        raise _too_many_parts(max_fields, multipart=False)
    charset = request.charset or "utf-8"
    try:
        return parse_qsl(body.decode(charset), keep_blank_values=True, encoding=charset)
    except (ValueError, LookupError) as exc:  # bad encoding or charset
        raise web.HTTPBadRequest(text=f"malformed form body: {exc}") from None


async def _read_json(request: web.Request, max_size: int) -> dict[str, Any]:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:  # a chunked body, counted as it came
        raise _too_large(max_size) from None
    try:
        # UTF-8 text first (what JSON is, and the fast path); the bytes
        # themselves as a fallback, so json.loads detects a BOM or UTF-16/32.
        try:
            value = json.loads(body.decode())
        except ValueError:
            if not body.strip():
                return {}
            value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJsonBody(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidJsonBody(
            "the request body is not valid JSON: it is nested too deeply"
        ) from None
    # Counting brackets is quick and rules out deep nesting for most bodies;
    # a body shorter than the limit cannot hold that many.
    if (
        len(body) > MAX_JSON_DEPTH
        and body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH
        and _too_deep(value)
    ):
        raise InvalidJsonBody(
            f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep"
        )
    if not isinstance(value, dict):
        raise InvalidJsonBody(
            "the JSON body must be an object mapping argument names to values"
        )
    return value


def _too_deep(value: Any) -> bool:
    """Whether lists and objects in ``value`` nest beyond :data:`MAX_JSON_DEPTH`."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


async def _read_multipart(
    request: web.Request,
    raw: RawArguments,
    max_size: int,
    upload_max_size: int,
    upload_dir: str | None,
) -> None:
    try:
        reader = await request.multipart()
    except _MALFORMED as exc:
        raise web.HTTPBadRequest(text=f"malformed multipart body: {exc}") from None
    max_parts = request.app.get(MAX_FORM_PARTS, DEFAULT_MAX_FORM_PARTS)
    writer = _Writer(upload_dir)
    files: list[tuple[int, _Spool, UploadedFile]] = []  # where in raw.pairs
    try:
        await _read_parts(
            reader, raw, files, writer, max_size, upload_max_size, max_parts
        )
        await writer.finish()
    except BaseException:
        writer.abandon()
        raise
    for index, spool, upload in files:
        raw.pairs[index] = (upload.name, upload._replace(filename=spool.path))


async def _read_parts(
    reader: MultipartReader,
    raw: RawArguments,
    files: list[tuple[int, _Spool, UploadedFile]],
    writer: _Writer,
    max_size: int,
    upload_max_size: int,
    max_parts: int,
) -> None:
    total = 0  # bytes of the whole body, files included
    in_memory = 0  # bytes of the text fields
    parts = 0
    while True:
        try:
            part = await reader.next()
        except _MALFORMED as exc:
            raise web.HTTPBadRequest(text=f"malformed multipart body: {exc}") from None
        if part is None:
            break
        parts += 1
        if max_parts and parts > max_parts:
            raise _too_many_parts(max_parts, multipart=True)
        # Parts already received are read without waiting, and their files
        # are written by another thread: let other requests in between (a
        # part's headers take a while to parse).
        await asyncio.sleep(0)
        if not isinstance(part, BodyPartReader):
            raise web.HTTPBadRequest(text="nested multipart bodies are not supported")
        name = part.name
        if not name:
            raise web.HTTPBadRequest(text="a multipart part has no field name")
        filename = part.filename
        if filename is not None:
            spool = writer.open()
            upload = UploadedFile(
                name=name,
                filename="",  # known once the thread has created the file
                content_type=part.headers.get(
                    "Content-Type", "application/octet-stream"
                ),
                original_filename=filename,
            )
            files.append((len(raw.pairs), spool, upload))
            raw.pairs.append((name, None))
            total = await _save_upload(part, spool, writer, total, upload_max_size)
        else:
            chunks = []
            while chunk := await part.read_chunk(CHUNK):
                total += len(chunk)
                in_memory += len(chunk)
                if upload_max_size and total > upload_max_size:
                    raise _too_large(upload_max_size, "--upload-max-size")
                if max_size and in_memory > max_size:
                    raise _too_large(max_size)
                chunks.append(chunk)
            data = _decode(part, b"".join(chunks))
            charset = part.get_charset(default="utf-8")
            try:
                raw.pairs.append((name, data.decode(charset)))
            except (UnicodeDecodeError, LookupError):
                raise web.HTTPBadRequest(
                    text=f"form field {name!r} is not valid {charset} text"
                ) from None


class _Spool:
    """An upload's temporary file; only the writer thread touches it.

    ``path`` is set once the file exists.
    """

    __slots__ = ("_dir", "_fd", "path")

    def __init__(self, upload_dir: str | None) -> None:
        self._dir = upload_dir
        self._fd = -1
        self.path = ""

    def write(self, data: bytes, last: bool) -> None:
        """Append ``data`` (creating the file first); close it when ``last``."""
        if self._fd < 0 and not self.path:
            self._fd, self.path = tempfile.mkstemp(
                prefix="deepaas-upload-", dir=self._dir
            )
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        if last:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def discard(self) -> None:
        """Close and remove the file (nothing buffered is left to write)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
        if self.path:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


class _Writer:
    """A request's upload files, created and written outside the event loop.

    The writes run one after the other, in order, in the loop's default
    executor (whose threads are already running: no thread is started per
    request).  The event loop hands over bytes and goes on reading the body;
    it waits only when more than :data:`WRITE_QUEUE_BYTES` bytes or
    :data:`WRITE_QUEUE_JOBS` writes are queued, and at the end.  When the
    request fails, the files are removed after the writes queued before.
    """

    def __init__(self, upload_dir: str | None) -> None:
        self._dir = upload_dir
        self._loop = asyncio.get_running_loop()
        self._spools: list[_Spool] = []
        # Jobs not started yet, and whether one runs now.
        self._waiting: deque[tuple[Callable[[], None], asyncio.Future[None]]] = deque()
        self._running = False
        # Writes handed over and not yet waited for, with their sizes.
        self._queued: deque[tuple[asyncio.Future[None], int]] = deque()
        self._bytes = 0

    def open(self) -> _Spool:
        """A new upload file, created by its first write."""
        spool = _Spool(self._dir)
        self._spools.append(spool)
        return spool

    async def write(self, spool: _Spool, data: bytes, last: bool) -> None:
        """Queue ``data`` for ``spool``; raise an earlier write's error."""
        while self._queued and (
            self._queued[0][0].done()
            or self._bytes + len(data) > WRITE_QUEUE_BYTES
            or len(self._queued) >= WRITE_QUEUE_JOBS
        ):
            await self._wait_oldest()
        future = self._submit(functools.partial(spool.write, data, last))
        self._queued.append((future, len(data)))
        self._bytes += len(data)

    async def finish(self) -> None:
        """Wait until every file is written and closed; raise the first error."""
        while self._queued:
            await self._wait_oldest()

    def abandon(self) -> None:
        """Remove every file once the queued writes have ended, without waiting."""
        for future, _ in self._queued:
            future.add_done_callback(_retrieve)
        if self._spools:  # (a file exists only once a write was queued)
            self._submit(functools.partial(_discard, self._spools)).add_done_callback(
                _retrieve
            )

    async def _wait_oldest(self) -> None:
        # A cancelled request cancels only this future: the write goes on in
        # its thread, and abandon() queues the removal after it.
        future, size = self._queued[0]
        await future
        self._queued.popleft()
        self._bytes -= size

    def _submit(self, job: Callable[[], None]) -> asyncio.Future[None]:
        done: asyncio.Future[None] = self._loop.create_future()
        self._waiting.append((job, done))
        if not self._running:
            self._start_next()
        return done

    def _start_next(self) -> None:
        job, done = self._waiting.popleft()
        self._running = True
        running = self._loop.run_in_executor(None, job)
        running.add_done_callback(functools.partial(self._ended, done))

    def _ended(self, done: asyncio.Future[None], running: asyncio.Future[None]) -> None:
        self._running = False
        if done.done():  # the request was cancelled while it waited
            if not running.cancelled():
                running.exception()  # seen: the request has its answer
        elif running.cancelled():
            done.cancel()
        elif (error := running.exception()) is not None:
            done.set_exception(error)
        else:
            done.set_result(None)
        if self._waiting:
            self._start_next()


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark an abandoned write's error as seen: the request is answered already."""
    if not future.cancelled():
        future.exception()


def _discard(spools: list[_Spool]) -> None:
    for spool in spools:
        spool.discard()


async def _save_upload(
    part: BodyPartReader,
    spool: _Spool,
    writer: _Writer,
    total: int,
    max_size: int,
) -> int:
    """Stream a file part to its writer, in batches; the body's bytes so far."""
    encoded = _encoded(part)
    batch: list[bytes] = []
    batched = 0
    while chunk := await part.read_chunk(CHUNK):
        total += len(chunk)
        if max_size and total > max_size:
            raise _too_large(max_size, "--upload-max-size")
        batch.append(_decode(part, chunk) if encoded else chunk)
        batched += len(chunk)
        if batched >= WRITE_BATCH:
            await writer.write(spool, b"".join(batch), last=False)
            batch, batched = [], 0
    await writer.write(spool, b"".join(batch), last=True)
    return total


def _decode(part: BodyPartReader, data: bytes) -> bytes:
    """Undo the part's transfer and content encodings; 400 when they are bad."""
    try:
        return part.decode(data)
    except (ValueError, LookupError, RuntimeError, zlib.error) as exc:
        raise web.HTTPBadRequest(
            text=f"multipart part {part.name!r} cannot be decoded: {exc}"
        ) from None


def _encoded(part: BodyPartReader) -> bool:
    return bool(part.headers.get("Content-Transfer-Encoding", "").strip()) and (
        part.headers.get("Content-Transfer-Encoding", "").lower()
        not in ("binary", "8bit", "7bit")
    )
