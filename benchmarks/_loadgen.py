"""Fallback load generator (when wrk is missing): aiohttp client, one process.

It prints the same ``BENCH_JSON`` summary line as ``wrk_post.lua``.  It is
far slower than wrk and shares the two cores with the server under test, so
its numbers understate fast servers; prefer wrk.

    python _loadgen.py URL BODY_FILE CONTENT_TYPE --concurrency 16 --duration 6
    (--header 'Authorization: Bearer x' adds a header to every request)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp


async def drive(url: str, body: bytes, content_type: str, concurrency: int,
                duration: float, extra: dict[str, str] | None = None,
                ) -> dict[str, float]:
    latencies: list[float] = []
    errors = status_errors = 0
    headers = {"Content-Type": content_type, **(extra or {})}
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        deadline = start + duration

        async def client() -> None:
            nonlocal errors, status_errors
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        if resp.status >= 400:
                            status_errors += 1
                            errors += 1
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    errors += 1
                latencies.append(time.perf_counter() - sent)

        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))] * 1e3

    return {
        "requests": len(latencies), "duration_s": elapsed, "errors": errors,
        "status_errors": status_errors, "timeouts": 0, "p50_ms": pct(50),
        "p90_ms": pct(90), "p99_ms": pct(99),
        "mean_ms": sum(latencies) / max(1, len(latencies)) * 1e3,
        "max_ms": latencies[-1] * 1e3 if latencies else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("body_file")
    parser.add_argument("content_type")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--header", help="one more header, 'Name: value'")
    args = parser.parse_args()
    with open(args.body_file, "rb") as handle:
        body = handle.read()
    extra = {}
    if args.header:
        name, _, value = args.header.partition(":")
        extra[name.strip()] = value.strip()
    summary = asyncio.run(drive(args.url, body, args.content_type, args.concurrency,
                                args.duration, extra))
    print("BENCH_JSON " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
