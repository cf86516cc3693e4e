"""Choosing the answer's media type from the Accept header or argument."""

from __future__ import annotations

from aiohttp import web

from deepaas.exceptions import NotAcceptable
from deepaas.model.wrapper import RawArguments


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


def _matches(media_range: str, choice: str) -> bool:
    if media_range == "*/*":
        return True
    kind, _, sub = media_range.partition("/")
    choice_kind, _, choice_sub = choice.lower().split(";")[0].partition("/")
    return kind == choice_kind and sub in ("*", choice_sub)


def choose_media_type(
    request: web.Request, raw: RawArguments, choices: list[str]
) -> str | None:
    """The media type the model is asked to answer with, or None.

    None leaves the model's ``accept`` argument alone: the model declares no
    choices, or the client named one explicitly in the ``accept`` argument
    (validated by the model's field).  ``*/*`` means the first choice.
    """
    if not choices:
        return None
    explicit = [v for k, v in raw.pairs if k == "accept"]
    if raw.json_body and "accept" in raw.json_body:
        explicit.append(raw.json_body["accept"])
    if explicit:
        return choices[0] if explicit[-1] == "*/*" else None
    header = request.headers.get("Accept", "").strip()
    if not header:
        return choices[0]
    for media_range in _parse_accept(header):
        for choice in choices:
            if _matches(media_range, choice):
                return choice
    raise NotAcceptable(
        f"this model answers with {', '.join(choices)}; the Accept header "
        f"{header!r} allows none of them"
    )
