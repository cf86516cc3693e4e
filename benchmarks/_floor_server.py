"""The floor: a bare aiohttp handler doing a model's work in-process.

No argument validation, no worker hop, no framework: the JSON body (or the
multipart upload, streamed to a temporary file as a real server would) goes
straight to the model's ``predict`` on the event loop.  Whatever a serving
framework adds on top shows as the distance to this server.

    python _floor_server.py --port 8080 --model deepaas_bench_models.echo
"""

from __future__ import annotations

import argparse
import importlib
import os
import tempfile
from types import SimpleNamespace
from typing import Any

from aiohttp import web

CHUNK = 256 * 1024


def make_app(model: Any) -> web.Application:
    async def predict_json(request: web.Request) -> web.Response:
        result = model.predict(**await request.json())
        return web.json_response({"status": "OK", "predictions": result})

    async def predict_upload(request: web.Request) -> web.Response:
        reader = await request.multipart()
        kwargs: dict[str, Any] = {}
        paths = []
        try:
            while (part := await reader.next()) is not None:
                fd, path = tempfile.mkstemp(prefix="floor-upload-")
                paths.append(path)
                with os.fdopen(fd, "wb") as out:
                    while chunk := await part.read_chunk(CHUNK):
                        out.write(chunk)
                kwargs[part.name] = SimpleNamespace(
                    name=part.name, filename=path, original_filename=part.filename,
                    content_type=part.headers.get("Content-Type"),
                )
            result = model.predict(**kwargs)
        finally:
            for path in paths:
                os.unlink(path)
        return web.json_response({"status": "OK", "predictions": result})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=0)
    app.router.add_post("/predict/json", predict_json)
    app.router.add_post("/predict/upload", predict_upload)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True, help="module of the model")
    args = parser.parse_args()
    model = importlib.import_module(args.model)
    if hasattr(model, "warm"):
        model.warm()
    web.run_app(make_app(model), host=args.host, port=args.port, access_log=None,
                print=None)


if __name__ == "__main__":
    main()
