"""Reading the chain of a model's exception, for the GPU error checks.

A model may wrap a framework's error in its own (``raise ModelFailed(...)
from exc``, or an exception raised while handling another): what the
framework said is then a link or two down ``__cause__``/``__context__``.
:mod:`deepaas.model.gpu_memory` and :mod:`deepaas.model.gpu_faults` both
look for it there, and quote it.
"""

from __future__ import annotations

from collections.abc import Iterator

#: How many ``__cause__``/``__context__`` links are followed: enough for a
#: model that wraps the error once or twice, bounded against long chains.
MAX_CHAIN_DEPTH = 8


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it was raised from or while handling, breadth
    first, up to :data:`MAX_CHAIN_DEPTH` links, each once (chains can loop)."""
    seen: set[int] = set()
    pending: list[tuple[BaseException, int]] = [(exc, 0)]
    while pending:
        current, depth = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if depth < MAX_CHAIN_DEPTH:
            for linked in (current.__cause__, current.__context__):
                if linked is not None:
                    pending.append((linked, depth + 1))


def exception_text(exc: BaseException) -> str:
    """``str(exc)``, or "" for an exception whose ``__str__`` fails."""
    try:
        return str(exc)
    except Exception:  # an exception whose __str__ fails says nothing
        return ""


def one_line(exc: BaseException) -> str:
    """What ``exc`` says, its whitespace collapsed to single spaces (its
    class name when it says nothing), for a client's one-line message."""
    return " ".join(exception_text(exc).split()) or type(exc).__name__


__all__ = ["MAX_CHAIN_DEPTH", "exception_chain", "exception_text", "one_line"]
