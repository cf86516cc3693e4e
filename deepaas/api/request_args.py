"""Reading call arguments from a request: query, forms, JSON and uploads.

Uploaded files are streamed to temporary files (never held in memory) and
handed to the model as :class:`~deepaas.model.files.UploadedFile`; the
caller removes them after the call with :func:`remove_uploads`.

Two limits apply, both answered 413 in JSON before anything is parsed when
the declared length is already too large: ``--client-max-size`` for what is
held in memory (a JSON or url-encoded body, the text fields of a multipart
body: parsing takes about four times their size) and ``--upload-max-size``
for a whole multipart body, whose files go to disk.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from typing import Any

from aiohttp import BodyPartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from deepaas.api.protocol import BodyReadTimeout
from deepaas.exceptions import InvalidJsonBody
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


def _too_large(limit: int, option: str = "--client-max-size") -> web.HTTPException:
    what = "multipart body" if option == "--upload-max-size" else "request body"
    exc = web.HTTPRequestEntityTooLarge(
        max_size=limit,
        actual_size=limit + 1,
        text=f"the {what} is larger than {option} ({limit} bytes)",
    )
    exc.force_close()  # the rest of the body is not worth reading
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
    parameters: list[dict[str, Any]],
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
    for param in parameters:
        if param.get("in") != "header":
            continue
        name = param.get("name", "")
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
    multipart body (0: no limit); past either the answer is 413.
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
            try:
                form = await request.post()
            except web.HTTPRequestEntityTooLarge:  # a chunked body, counted
                raise _too_large(max_size) from None
            except (ValueError, LookupError) as exc:  # bad encoding or charset
                raise web.HTTPBadRequest(text=f"malformed form body: {exc}") from None
            raw.pairs.extend((k, v) for k, v in form.items() if isinstance(v, str))
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
    total = 0  # bytes of the whole body, files included
    in_memory = 0  # bytes of the text fields
    while True:
        try:
            part = await reader.next()
        except _MALFORMED as exc:
            raise web.HTTPBadRequest(text=f"malformed multipart body: {exc}") from None
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise web.HTTPBadRequest(text="nested multipart bodies are not supported")
        name = part.name
        if not name:
            raise web.HTTPBadRequest(text="a multipart part has no field name")
        if part.filename is not None:
            upload, total = await _save_upload(
                part, name, total, upload_max_size, upload_dir
            )
            raw.pairs.append((name, upload))
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


async def _save_upload(
    part: BodyPartReader, name: str, total: int, max_size: int, upload_dir: str | None
) -> tuple[UploadedFile, int]:
    fd, path = tempfile.mkstemp(prefix="deepaas-upload-", dir=upload_dir)
    upload = UploadedFile(
        name=name,
        filename=path,
        content_type=part.headers.get("Content-Type", "application/octet-stream"),
        original_filename=part.filename or "",
    )
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await part.read_chunk(CHUNK):
                total += len(chunk)
                if max_size and total > max_size:
                    raise _too_large(max_size, "--upload-max-size")
                out.write(_decode(part, chunk) if _encoded(part) else chunk)
    except BaseException:
        upload.remove()
        raise
    return upload, total


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
