"""One bootstrap for every child process deepaas starts for a model.

The serving workers (:mod:`deepaas.engine.process_pool.pool`), the batch workers
(:mod:`deepaas.batch.pool`), the start-up probe (:mod:`deepaas.engine.probe`)
and the trainings (:mod:`deepaas.training._child`) are started alike:
:func:`spawn_child` (``spawn``, the child's environment, its
:class:`Prologue`), a ``ready``/``failed`` handshake (:func:`start_child`,
:func:`report_ready`; :func:`start_failure`, :func:`ready_payload` on the
parent's side) and :func:`describe_exit` once one ends.  What differs
between them is their loop: what they do once started.  What crosses their
sockets is :mod:`deepaas.engine.processes.wire`.
"""

from deepaas.engine.processes.lost_gpu import GPU_FAILED_EXIT, exit_for_failed_gpu
from deepaas.engine.processes.prologue import (
    Prologue,
    children_skip_main_module,
    freeze_startup_objects,
    worker_prologue,
)
from deepaas.engine.processes.spawn import (
    FAILED,
    READY,
    describe_exit,
    ready_payload,
    report_ready,
    spawn_child,
    spawn_context,
    start_child,
    start_failure,
)

__all__ = [
    "FAILED",
    "GPU_FAILED_EXIT",
    "READY",
    "Prologue",
    "children_skip_main_module",
    "describe_exit",
    "exit_for_failed_gpu",
    "freeze_startup_objects",
    "ready_payload",
    "report_ready",
    "spawn_child",
    "spawn_context",
    "start_child",
    "start_failure",
    "worker_prologue",
]
