"""``wide_mlp`` (MLP 784-4096-4096-10) as a LitServe API, one request per call.

The very same network as the DEEPaaS model (``_mlp.MLP(4096)``), warmed in
``setup``; same request body (``{"data": [784 floats]}``) and answer
(``{"predictions": [10 floats]}``) as ``small_mlp``, whose decoding it
reuses.  Served by ``_litserve_server.py`` in LitServe's own virtualenv.
"""

from __future__ import annotations

from deepaas_bench_models._mlp import MLP
from deepaas_bench_models.litserve_small_mlp import SmallMLPAPI


class WideMLPAPI(SmallMLPAPI):
    """MLP 784-4096-4096-10 on the CPU, one thread, one request per call."""

    def setup(self, device: str) -> None:
        self.net = MLP(4096)
        self.net.warm()
