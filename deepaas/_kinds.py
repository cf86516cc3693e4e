"""The kinds of operation that every route has and that tokens are given.

Kept in a module of its own, with no imports, so that the command-line
options (:mod:`deepaas._security_options`, read by every tool) and the
HTTP layer (:mod:`deepaas.api.security.auth`, :mod:`deepaas.api.routes`) share one
definition without the options importing aiohttp.
"""

from __future__ import annotations

__all__ = ["KINDS"]

#: Every kind of operation, as the route table, rules and ``--auth-open``
#: name them: ``predict``, ``train`` (trainings and the debug log), ``read``
#: (versions, model listings and metadata), ``docs`` (the API descriptions
#: and Swagger UI) and the probes ``health``, ``ready`` and ``metrics``.
KINDS = ("predict", "train", "read", "docs", "health", "ready", "metrics")
