"""``small_mlp`` as a LitServe API that batches concurrent requests.

The batch settings are those of ``small_mlp_batched`` (the DEEPaaS model
with ``predict_batch``): at most 32 requests per call, waiting at most
5 ms for a batch to fill, set on the ``LitAPI`` as LitServe 0.2.19 wants.
"""

from __future__ import annotations

from typing import Any

from deepaas_bench_models.litserve_small_mlp import SmallMLPAPI

MAX_BATCH_SIZE = 32
BATCH_TIMEOUT = 0.005


class SmallMLPBatchedAPI(SmallMLPAPI):
    """MLP 784-512-512-10, up to 32 requests through the network at once."""

    def __init__(self) -> None:
        super().__init__(max_batch_size=MAX_BATCH_SIZE, batch_timeout=BATCH_TIMEOUT)

    def predict(self, x: list[list[float]], **kwargs: Any) -> list[list[float]]:
        return self.net.predict_many(x)
