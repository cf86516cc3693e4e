"""A worker whose GPU failed leaves, so that its pool starts a fresh one.

After a sticky CUDA fault (:mod:`deepaas.model.gpu_faults`) every later
CUDA call of the process fails, so a worker that answered such a call would
fail every call it takes from then on.  Once its answer is sent, it exits
with :data:`GPU_FAILED_EXIT`; the pool that started it (the serving pool or
deepaas-predict's) already knows from that answer why, and replaces it
through the path any worker that ends takes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn

LOG = logging.getLogger("deepaas.engine.workers")

#: The exit status of a worker that left because its GPU failed
#: (``EX_TEMPFAIL``: a fresh process may well succeed).
GPU_FAILED_EXIT = 75


def exit_for_failed_gpu(model: str, method: str, fault: str) -> NoReturn:
    """Log why (one ERROR line), then end this worker process at once.

    ``os._exit``: no ``atexit`` handler nor a framework's own clean-up runs,
    since either may make CUDA calls on the broken context and hang or fail.
    ``fault`` is the fault's short name (``device-side assert triggered``).
    """
    LOG.error(
        "model %r: the GPU failed in %s (%s); this worker exits to be replaced",
        model,
        method,
        fault,
    )
    # A handler or stream that cannot flush has nowhere to write anyway.
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    os._exit(GPU_FAILED_EXIT)


__all__ = ["GPU_FAILED_EXIT", "exit_for_failed_gpu"]
