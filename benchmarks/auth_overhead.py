"""What the per-route checks (Origin, Host, tokens) cost a small predict call.

Serves the trivial echo model in this process (``--workers 0``), so that the
HTTP layer is all that is measured, and drives it with aiohttp clients on
loopback with ``wrk`` (in its own process), one configuration after the
other, interleaved over rounds:

* ``default``: what every server does (the Origin check on POST);
* ``hosts``: plus the Host allow-list (the default on a loopback address);
* ``static-token``: plus a static bearer token (file or environment);
* ``oidc-token``: plus an OIDC access token (RS256), verified once and then
  found in the verifier's cache;
* ``oidc-uncached``: the same with the cache cleared before every request,
  i.e. a signature check per request.

It also times the checks alone (microseconds per call, no HTTP).  Run:
``python benchmarks/auth_overhead.py [--seconds 5] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from deepaas.api import create_app  # noqa: E402
from deepaas.api.security.auth import AuthPolicy, StaticTokens  # noqa: E402
from deepaas.api.security.guard import Guard  # noqa: E402
from deepaas.api.security.oidc import OidcVerifier  # noqa: E402
from deepaas.api.security.origins import LOOPBACK_HOSTS, OriginPolicy  # noqa: E402
from deepaas.engine.build import build_executors  # noqa: E402
from deepaas.model.loading import ModelSpec  # noqa: E402

ISSUER = "https://aai.example.org"
STATIC = "bench-static-token-0123456789abcdef"
PATH = "/v2/models/echo/predict/"


def _oidc(tmp: Path) -> tuple[OidcVerifier, str]:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    algorithm = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256)
    public = json.loads(algorithm.to_jwk(key.public_key()))
    (tmp / "jwks.json").write_text(json.dumps({"keys": [{**public, "kid": "k1"}]}))
    verifier = OidcVerifier(issuer=ISSUER, jwks_file=str(tmp / "jwks.json"))
    claims = {"iss": ISSUER, "sub": "bench", "exp": int(time.time()) + 3600}
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    return verifier, token


class _Forgetful(dict):
    """A verified-token cache that keeps nothing."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


def configurations(tmp: Path) -> dict[str, tuple[Guard, dict[str, str]]]:
    """name -> (guard, request headers)."""
    verifier, token = _oidc(tmp)
    uncached = OidcVerifier(issuer=ISSUER, jwks_file=str(tmp / "jwks.json"))
    uncached._verified = _Forgetful()  # a signature check on every request
    hosts = OriginPolicy(allowed_hosts=LOOPBACK_HOSTS)
    return {
        "default": (Guard(), {}),
        "hosts": (Guard(origins=hosts), {}),
        "static-token": (
            Guard(origins=hosts, auth=AuthPolicy(tokens=StaticTokens({STATIC: []}))),
            {"Authorization": f"Bearer {STATIC}"},
        ),
        "oidc-token": (
            Guard(origins=hosts, auth=AuthPolicy(oidc=verifier)),
            {"Authorization": f"Bearer {token}"},
        ),
        "oidc-uncached": (
            Guard(origins=hosts, auth=AuthPolicy(oidc=uncached)),
            {"Authorization": f"Bearer {token}"},
        ),
    }


async def _load(
    url: str, headers: dict[str, str], seconds: float, concurrency: int, body: Path
) -> float:
    """Requests per second that wrk gets at ``concurrency`` for ``seconds``.

    wrk runs in its own process, so that the server's event loop (in this
    one) is all that the configurations change.
    """
    header = [f"{name}: {value}" for name, value in headers.items()][:1]
    process = await asyncio.create_subprocess_exec(
        *("wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "30s"),
        *("-s", str(HERE / "wrk_post.lua"), url, "--", str(body), "application/json"),
        *header,
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await process.communicate()
    for line in output.decode().splitlines():
        if line.startswith("BENCH_JSON "):
            summary = json.loads(line.split(" ", 1)[1])
            assert not summary["errors"], summary
            return float(summary["requests"]) / float(summary["duration_s"])
    raise RuntimeError(f"wrk printed no summary: {output.decode()}")


async def _serve_and_load(
    guard: Guard, headers: dict[str, str], args: argparse.Namespace, body: Path
) -> float:
    spec = ModelSpec("echo", "deepaas_bench_models.echo", None)  # imported as is
    app = create_app(build_executors([spec], workers=0), guard=guard)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url(PATH))
        await _load(url, headers, 1, args.concurrency, body)  # warm-up
        return await _load(url, headers, args.seconds, args.concurrency, body)
    finally:
        await server.close()


async def _check_cost(guard: Guard, headers: dict[str, str]) -> float:
    """Microseconds that the guard's checks take per request (no HTTP)."""
    app = web.Application()
    request = make_mocked_request(
        "POST", PATH, headers={"Host": "127.0.0.1:5000", **headers}, app=app
    )
    auth = guard.auth
    rounds = 2000
    for _ in range(100):  # warm-up
        await auth.check(request, "predict") if auth is not None else None
    start = time.perf_counter()
    for _ in range(rounds):
        assert guard.origins.check_host(request) is None
        assert guard.origins.check_origin(request) is None
        if auth is not None:
            assert await auth.check(request, "predict") is None
    return (time.perf_counter() - start) / rounds * 1e6


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        configs = configurations(Path(tmp))
        body = Path(tmp) / "body.json"
        body.write_text(json.dumps({"message": "hi"}))
        rates: dict[str, list[float]] = {name: [] for name in configs}
        for _ in range(args.rounds):
            for name, (guard, headers) in configs.items():
                rate = await _serve_and_load(guard, headers, args, body)
                rates[name].append(rate)
        checks = {
            name: await _check_cost(guard, headers)
            for name, (guard, headers) in configs.items()
        }
    base = statistics.median(rates["default"])
    results = {}
    print(f"{'configuration':<16}{'req/s':>10}{'vs default':>12}{'checks (us)':>14}")
    for name, values in rates.items():
        median = statistics.median(values)
        results[name] = {"rps": median, "check_us": checks[name]}
        change = f"{(median / base - 1) * 100:+.1f}%"
        print(f"{name:<16}{median:>10.0f}{change:>12}{checks[name]:>14.1f}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
