"""Choosing the answer's media type from the Accept header or argument.

As lenient as DEEPaaS 2.x clients expect: ``*/*`` or no header means the
model's first choice, a concrete type inside a declared range (``image/png``
for ``image/*``) is answered as that type, and a header that allows none of
the choices gets the first one rather than a 406.
"""

from __future__ import annotations

from aiohttp import web

from deepaas.model.wrapper import RawArguments

#: (the ``accept`` value the model receives, the answer's concrete media type
#: when it differs from that value, i.e. a type inside a declared range)
Negotiated = tuple[str | None, str | None]

#: What a model without ``accept`` choices is given (and answers).
NO_CHOICE: Negotiated = (None, None)


def _parse_accept(header: str) -> list[str]:
    """Media ranges of an Accept header, best first (stable for ties)."""
    ranges: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")):
        media, *params = [p.strip() for p in item.split(";")]
        if not media:
            continue
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranges.append((-quality, index, media.lower()))
    return [media for _, _, media in sorted(ranges)]


def _covers(media_range: str, media_type: str) -> bool:
    """Whether ``media_range`` (``*/*``, ``image/*`` or a type) includes the type."""
    if media_range == "*/*":
        return True
    kind, _, sub = media_range.partition("/")
    type_kind, _, type_sub = media_type.lower().split(";")[0].partition("/")
    return kind == type_kind and sub in ("*", type_sub)


def choose_media_type(
    request: web.Request, raw: RawArguments, choices: list[str]
) -> Negotiated:
    """The ``accept`` value for the model and the answer's concrete media type.

    The model's value is None when the model declares no choices, or when
    the client named one explicitly in the ``accept`` argument (validated by
    the model's field, so that a value outside the choices is a 422).
    """
    if not choices:
        return NO_CHOICE
    explicit = [v for k, v in raw.pairs if k == "accept"]
    if raw.json_body and "accept" in raw.json_body:
        explicit.append(raw.json_body["accept"])
    if explicit:
        return (choices[0], None) if explicit[-1] == "*/*" else NO_CHOICE
    header = request.headers.get("Accept", "").strip()
    if not header:
        return choices[0], None
    for media_range in _parse_accept(header):
        for choice in choices:
            if _covers(media_range, choice):
                return choice, None
            if "*" not in media_range and _covers(choice.lower(), media_range):
                return choice, media_range  # image/png asked, image/* offered
    return choices[0], None  # what DEEPaaS 2.x clients rely on, not a 406
