"""Finding installed models and loading them through stevedore.

Listing models reads entry-point metadata only: nothing is imported until a
model is chosen, so a broken or heavy model never slows or breaks the
others.  Loading goes through stevedore, whose failure callback lets us log
each broken plugin with its traceback and fail only when that plugin is the
one asked for.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import logging
import os
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

import stevedore

from deepaas.exceptions import ModelLoadError, ModelNotFound, MultipleModelsFound

LOG = logging.getLogger(__name__)

MODEL_NAMESPACE = "deepaas.v2.model"
DEMO_MODEL_NAME = "deepaas-demo"
MODEL_ENV_VAR = "DEEPAAS_V2_MODEL"


def model_names_from_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """The model names in ``$DEEPAAS_V2_MODEL`` (comma-separated; none if unset).

    Every console script reads the variable here, so that it means the
    same to each: the names to serve or call when none is given.
    """
    env = os.environ if environ is None else environ
    return [
        name.strip() for name in env.get(MODEL_ENV_VAR, "").split(",") if name.strip()
    ]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Where to find a model: its served name and an import target.

    ``target`` is an entry-point value, ``"package.module"`` or
    ``"package.module:attribute"``.  A spec is small and picklable, so worker
    processes receive it and import the model themselves.
    """

    name: str
    target: str
    namespace: str | None = MODEL_NAMESPACE


def available_models(namespace: str = MODEL_NAMESPACE) -> dict[str, ModelSpec]:
    """Installed models by name, read from entry points without importing them."""
    found: dict[str, ModelSpec] = {}
    for entry in importlib.metadata.entry_points(group=namespace):
        found.setdefault(entry.name, ModelSpec(entry.name, entry.value, namespace))
    return dict(sorted(found.items()))


def select_models(
    requested: Sequence[str],
    available: dict[str, ModelSpec],
    *,
    all_when_unnamed: bool = False,
) -> list[ModelSpec]:
    """Choose the models to serve, as the contract says.

    With names, serve exactly those.  Without, serve the only installed
    model; with several installed, serve them all when ``all_when_unnamed``
    (``deepaas-run``, as DEEPaaS 2.x does, with a warning), else raise
    :class:`MultipleModelsFound` (the tools that call one model).  The
    built-in demo counts only when nothing else is installed.
    """
    if requested:
        missing = [name for name in requested if name not in available]
        if missing:
            raise ModelNotFound(
                f"model {missing[0]!r} is not installed; installed models: "
                f"{_listing(available)}"
            )
        return [available[name] for name in dict.fromkeys(requested)]
    real = {n: s for n, s in available.items() if n != DEMO_MODEL_NAME}
    if len(real) == 1:
        return list(real.values())
    if len(real) > 1 and all_when_unnamed:
        LOG.warning(
            "several models are installed and none was named: serving all of "
            "them (%s); name the one to serve with --model-name NAME or %s "
            "(serving several unnamed models is deprecated in DEEPaaS 2.x)",
            _listing(real),
            MODEL_ENV_VAR,
        )
        return list(real.values())
    if len(real) > 1:
        raise MultipleModelsFound(
            f"several models are installed ({_listing(real)}); choose one with "
            f"--model-name NAME or the {MODEL_ENV_VAR} environment variable"
        )
    if DEMO_MODEL_NAME in available:
        return [available[DEMO_MODEL_NAME]]
    raise ModelNotFound(
        f"no model is installed in the entry-point group {MODEL_NAMESPACE!r}; "
        "install one with pip, or reinstall deepaas for its demo model"
    )


def _listing(available: dict[str, ModelSpec]) -> str:
    return ", ".join(sorted(available)) or "none"


def _instantiate(name: str, plugin: Any) -> Any:
    if isinstance(plugin, type):
        try:
            return plugin()
        except Exception as exc:
            raise ModelLoadError(
                f"model {name!r}: creating {plugin.__name__}() raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    return plugin


def load_model(spec: ModelSpec) -> Any:
    """Import a model (module, class instance or object) for ``spec``."""
    return load_models([spec])[spec.name]


def load_models(specs: Sequence[ModelSpec]) -> dict[str, Any]:
    """Import several models; one broken model never hides the others.

    Entry-point specs load through one stevedore manager; specs without a
    namespace (tests, embedding code) import their target directly.  Every
    failure is logged with its traceback; the first one is raised as
    :class:`ModelLoadError` naming the model and the reason.
    """
    failures: dict[str, str] = {}
    loaded: dict[str, Any] = {}
    by_namespace: dict[str, list[ModelSpec]] = {}
    for spec in specs:
        if spec.namespace:
            by_namespace.setdefault(spec.namespace, []).append(spec)
        else:
            try:
                loaded[spec.name] = _import_target(spec.target)
            except Exception as exc:
                failures[spec.name] = _reason(exc)

    for namespace, group in by_namespace.items():
        names = [s.name for s in group]

        def on_failure(_manager: Any, entry: Any, exc: BaseException) -> None:
            failures[entry.name] = _reason(exc)

        def on_missing(missing: Any) -> None:
            # stevedore also reports a plugin that failed to import as
            # missing: keep the import error, which says why.
            for name in missing:
                failures.setdefault(name, "not installed")

        # stevedore keeps each namespace's entry points for the life of the
        # process; listing (available_models) reads what is installed now,
        # and loading must agree with it, or a model installed after a first
        # load is "not installed" to an embedding application or a test run.
        stevedore.ExtensionManager.ENTRY_POINT_CACHE.pop(namespace, None)
        manager = stevedore.NamedExtensionManager(
            namespace,
            names=names,
            invoke_on_load=False,
            on_load_failure_callback=on_failure,
            name_order=True,
            on_missing_entrypoints_callback=on_missing,
        )
        for extension in manager.extensions:
            loaded[extension.name] = extension.plugin

    for name, reason in failures.items():
        LOG.error("model %r could not be loaded:\n%s", name, reason)
    result: dict[str, Any] = {}
    for spec in specs:
        if spec.name in failures:
            first_line = failures[spec.name].strip().splitlines()[-1]
            raise ModelLoadError(
                f"model {spec.name!r} ({spec.target}) could not be loaded: {first_line}"
            )
        result[spec.name] = _instantiate(spec.name, loaded[spec.name])
    return result


def _reason(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def _import_target(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    obj: Any = importlib.import_module(module_name.strip())
    for part in filter(None, attribute.strip().split(".")):
        obj = getattr(obj, part)
    return obj
