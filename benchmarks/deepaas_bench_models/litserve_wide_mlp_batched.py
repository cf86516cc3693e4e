"""``wide_mlp`` as a LitServe API that batches concurrent requests.

The batch settings are those of ``wide_mlp_batched`` (the DEEPaaS model
with ``predict_batch``): at most 32 requests per call, waiting at most 5 ms
for a batch to fill.  LitServe 0.2.19 takes them on the ``LitAPI`` (on
``LitServer`` they are deprecated); its default ``batch`` hands ``predict``
the list of decoded requests and its default ``unbatch`` splits the list of
answers, one per request.
"""

from __future__ import annotations

from typing import Any

from deepaas_bench_models.litserve_wide_mlp import WideMLPAPI

MAX_BATCH_SIZE = 32
BATCH_TIMEOUT = 0.005


class WideMLPBatchedAPI(WideMLPAPI):
    """MLP 784-4096-4096-10, up to 32 requests through the network at once."""

    def __init__(self) -> None:
        super().__init__(max_batch_size=MAX_BATCH_SIZE, batch_timeout=BATCH_TIMEOUT)

    def predict(self, x: list[list[float]], **kwargs: Any) -> list[list[float]]:
        return self.net.predict_many(x)
