"""LitServe serving one benchmark model, for the start-up comparison.

Run with the interpreter of LitServe's virtualenv (``startup_benchmark.py``
makes it): the API class comes from ``deepaas_bench_models`` (on
``PYTHONPATH``), LitServe's defaults otherwise (one inference worker
process, one API server process), on the CPU, quiet logs, no ``client.py``.

    python _litserve_server.py --port 8080 --model bench_small_mlp
"""

from __future__ import annotations

import argparse
import importlib

import litserve as ls

APIS = {
    "bench_echo": ("deepaas_bench_models.litserve_echo", "EchoAPI"),
    "bench_small_mlp": ("deepaas_bench_models.litserve_small_mlp", "SmallMLPAPI"),
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
