"""Start-up timestamps of every Python process of a server, from outside it.

``startup_breakdown.py`` puts this folder first on ``PYTHONPATH`` and names
a file in ``STARTUP_TRACE``; every interpreter of the server's process tree
(the API process, the probe, the workers: spawned children inherit the
environment) then appends one JSON line per event to that file:

* ``created``: when the kernel created the process (``/proc/self/stat``,
  10 ms resolution), ``site``: when the interpreter reached site-packages;
* ``import-start`` / ``import-end`` of the modules named in
  ``STARTUP_TRACE_MODULES`` (comma-separated), nested ones included;
* ``warm-start`` / ``warm-end`` around a traced module's ``warm()``;
* ``exit`` at interpreter exit.

Times are ``CLOCK_BOOTTIME`` seconds, the clock process creation times are
counted on, so events of different processes line up.  Nothing of the
server's code is changed: only its imports are watched.  Without
``STARTUP_TRACE`` this module does nothing.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import json
import os
import sys
import time

_PATH = os.environ.get("STARTUP_TRACE")
_WATCH = {m for m in os.environ.get("STARTUP_TRACE_MODULES", "").split(",") if m}
_WARM = set(os.environ.get("STARTUP_TRACE_WARM", "").split(",")) - {""}


def _now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _name() -> str:
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return "main"
    try:
        return str(mp.current_process().name)
    except Exception:  # noqa: BLE001 (tracing must never break the server)
        return "?"


def _emit(event: str, **extra: object) -> None:
    record = {
        "t": _now(),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "event": event,
        "process": _name(),
        **extra,
    }
    with open(_PATH, "a") as out:  # type: ignore[arg-type]
        out.write(json.dumps(record) + "\n")


def _created() -> float:
    with open("/proc/self/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _timed_warm(name: str, warm):  # type: ignore[no-untyped-def]
    @functools.wraps(warm)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        _emit("warm-start", module=name)
        try:
            return warm(*args, **kwargs)
        finally:
            _emit("warm-end", module=name)

    return wrapper


class _ImportTimer:
    """A meta-path finder that times the execution of the watched modules."""

    def __init__(self) -> None:
        self._looking: set[str] = set()

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname not in _WATCH or fullname in self._looking:
            return None
        self._looking.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._looking.discard(fullname)
        if (
            spec is None
            or spec.loader is None
            or not hasattr(spec.loader, "exec_module")
        ):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):  # type: ignore[no-untyped-def]
            _emit("import-start", module=fullname)
            try:
                run(module)
            finally:
                _emit("import-end", module=fullname)
            if fullname in _WARM and callable(getattr(module, "warm", None)):
                module.warm = _timed_warm(fullname, module.warm)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if _PATH:
    _emit("created", at=_created())
    _emit("site", argv=sys.argv[:3], executable=sys.executable)
    sys.meta_path.insert(0, _ImportTimer())
    atexit.register(_emit, "exit")
