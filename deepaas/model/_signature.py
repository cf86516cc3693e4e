"""Checking, when a model loads, that ``predict``/``train`` take their arguments.

deepaas calls ``predict(**kwargs)`` and ``train(**kwargs)`` with the
arguments the model declares in ``get_predict_args``/``get_train_args``.  A
signature that cannot take them (a renamed parameter, a declared argument
missing from the signature, a parameter nobody declares) would fail every
single call; refusing the model at start-up says so once, in one line,
before anybody sends a request.

The check reads the signature of the callable deepaas actually calls: a
decorated method whose wrapper takes ``*args, **kwargs`` is not second-guessed
(its decorator may add or consume arguments).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import marshmallow

from deepaas.exceptions import ModelLoadError

_BY_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def declared_keywords(schema: marshmallow.Schema) -> dict[str, str]:
    """Keyword the model receives -> how the argument is named in errors.

    A field's keyword is its name in the argument dict, or the first part of
    its ``attribute`` when it has one; ``data_key`` only renames what the
    client sends.
    """
    keywords: dict[str, str] = {}
    for name, field in schema.load_fields.items():
        keyword = field.attribute.split(".")[0] if field.attribute else name
        label = repr(keyword)
        if field.attribute:
            label += f" (field {name!r}, attribute={field.attribute!r})"
        elif field.data_key is not None and field.data_key != name:
            label += f" (sent as {field.data_key!r})"
        keywords[keyword] = label
    return keywords


def check_signature(
    model: str,
    method_name: str,
    method: Callable[..., Any],
    schema: marshmallow.Schema,
    getter: str,
) -> None:
    """Raise :class:`ModelLoadError` when ``method`` cannot take its arguments."""
    try:
        signature = inspect.signature(method, follow_wrapped=False)
    except (TypeError, ValueError):
        return  # a builtin or C callable that does not tell: the calls will
    params = signature.parameters
    declared = declared_keywords(schema)
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        for keyword, label in declared.items():
            param = params.get(keyword)
            if param is None or param.kind not in _BY_KEYWORD:
                raise ModelLoadError(
                    f"model {model!r}: {method_name}() cannot take the argument "
                    f"{label} that {getter}() declares; add it to the signature "
                    "(or take **kwargs)"
                )
    for param in params.values():
        if param.default is not inspect.Parameter.empty:
            continue
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise ModelLoadError(
                f"model {model!r}: {method_name}() requires the positional-only "
                f"argument {param.name!r}; deepaas passes arguments by keyword"
            )
        if param.kind in _BY_KEYWORD and param.name not in declared:
            raise ModelLoadError(
                f"model {model!r}: {method_name}() requires the argument "
                f"{param.name!r}, which {getter}() does not declare; declare it "
                "or give it a default"
            )
