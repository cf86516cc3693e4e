"""The process pool: a model's calls answered by spawned worker processes.

``pool.py`` is the :class:`ProcessPool` executor (start, restart with
backoff, stop, status), ``_dispatch.py`` decides which worker takes the
next call (an idle one, a short-call pipeline, or the bounded queue),
``_worker_handle.py`` is the API process's handle on one worker and
``_worker_main.py`` the loop a worker runs once
:mod:`deepaas.engine.processes` has started it.
"""

from deepaas.engine.process_pool.pool import ProcessPool, RunsInProcess

__all__ = ["ProcessPool", "RunsInProcess"]
