"""LitServe serving one benchmark model, for the serving and start-up comparisons.

Run with the interpreter of LitServe's virtualenv (``serve_benchmark.py``
and ``startup_benchmark.py`` make it): the API class comes from
``deepaas_bench_models`` (on ``PYTHONPATH``), LitServe's defaults otherwise
(one inference worker process, one API server process), on the CPU, quiet
logs, no ``client.py``.  It answers on ``POST /predict``; ``GET /health``
says 200 once the worker has run ``setup``.

    python _litserve_server.py --port 8080 --model bench_small_mlp
"""

from __future__ import annotations

import argparse
import importlib

import litserve as ls

APIS = {
    "bench_echo": ("deepaas_bench_models.litserve_echo", "EchoAPI"),
    "bench_small_mlp": ("deepaas_bench_models.litserve_small_mlp", "SmallMLPAPI"),
    "bench_small_mlp_batched": (
        "deepaas_bench_models.litserve_small_mlp_batched",
        "SmallMLPBatchedAPI",
    ),
    "bench_wide_mlp": ("deepaas_bench_models.litserve_wide_mlp", "WideMLPAPI"),
    "bench_wide_mlp_batched": (
        "deepaas_bench_models.litserve_wide_mlp_batched",
        "WideMLPBatchedAPI",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True, choices=sorted(APIS))
    args = parser.parse_args()
    module, name = APIS[args.model]
    api = getattr(importlib.import_module(module), name)()
    server = ls.LitServer(api, accelerator="cpu")
    server.run(
        host=args.host, port=args.port, log_level="warning", generate_client_file=False
    )


if __name__ == "__main__":
    main()
