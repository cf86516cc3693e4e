"""``small_mlp`` (MLP 784-512-512-10) as a LitServe API, for the start-up comparison.

The very same network as the DEEPaaS model (``_mlp.MLP(512)``, torch
imported at the top of the module as there), warmed in ``setup`` as
DEEPaaS's ``warm()`` does; same request body (``{"data": [784 floats]}``)
and answer (``{"predictions": [10 floats]}``).
"""

from __future__ import annotations

from typing import Any

import litserve as ls

from deepaas_bench_models._mlp import INPUTS, MLP


class SmallMLPAPI(ls.LitAPI):
    """MLP 784-512-512-10 on the CPU, one thread."""

    def setup(self, device: str) -> None:
        self.net = MLP(512)
        self.net.warm()

    # No annotation on ``request``: LitServe would read it as the request's
    # type and FastAPI look for it in the query string.
    def decode_request(self, request, **kwargs: Any) -> list[float]:  # type: ignore[no-untyped-def]
        data = list(request["data"])
        if len(data) != INPUTS:
            raise ValueError(f"data must hold {INPUTS} values (got {len(data)})")
        return data

    def predict(self, x: list[float], **kwargs: Any) -> list[float]:
        return self.net.predict(x)

    def encode_response(self, output: Any, **kwargs: Any) -> dict[str, Any]:
        return {"predictions": output}
