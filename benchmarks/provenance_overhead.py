"""What ``deepaas-run --provenance-log`` costs a prediction on the echo model.

Starts two real ``deepaas-run`` servers of the benchmark echo model
(``bench_echo``, the default ``--workers 1``): one without the option, one
with ``--provenance-log FILE``.  Both get the same load (``wrk``, else the
aiohttp client of ``_loadgen.py``) one after the other, interleaved over
rounds with the order alternating, so that a drift of the machine touches
both alike.  Prints req/s of each cell, the medians, and the ratio
on / off, then checks that the log holds one record per answered request
(after the server stopped, which writes the last ones).  It also times the
log writer's own work per record (hashing and formatting, in its own
process).

    python benchmarks/provenance_overhead.py [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench_env import cpu_name, write_model_package  # noqa: E402
from _bench_servers import Server, ServerSet, free_port  # noqa: E402

MODEL = "bench_echo"
BODY = {"message": "hello, benchmark"}


def build_server(label: str, work: Path, site: Path, extra: list[str]) -> Server:
    port = free_port()
    tmp = work / "tmp" / label
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "DEEPAAS_V2_MODEL"}
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), str(HERE.parent)]),
        TMPDIR=str(tmp),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    script = Path(sys.executable).parent / "deepaas-run"
    command = (
        [str(script)] if script.exists() else [sys.executable, "-m", "deepaas.cmd.run"]
    )
    command += [
        "--listen-ip", "127.0.0.1", "--listen-port", str(port),
        "--model-name", MODEL, "--log-level", "WARNING",
        "--shutdown-timeout", "2", *extra,
    ]  # fmt: skip
    return Server(
        label=label,
        settings=" ".join(extra) or "defaults",
        command=command,
        env=env,
        port=port,
        ready_path="/ready",
        predict_path=f"/v2/models/{MODEL}/predict/",
        log=work / "logs" / f"{label}.log",
    )


def load(server: Server, body: Path, concurrency: int, seconds: int) -> dict[str, Any]:
    """Drive ``server`` for ``seconds``; the load generator's summary."""
    ctype = "application/json"
    if shutil.which("wrk"):
        command = [
            "wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "30s",
            "-s", str(HERE / "wrk_post.lua"), server.url, "--", str(body), ctype,
        ]  # fmt: skip
    else:
        command = [
            sys.executable, str(HERE / "_loadgen.py"), server.url, str(body), ctype,
            "--concurrency", str(concurrency), "--duration", str(seconds),
        ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"load generator failed: {done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1].split(" ", 1)[1])
    result["ok"] = result["requests"] - result["errors"]
    result["rps"] = result["ok"] / result["duration_s"]
    return result


def writer_cost(samples: int = 20_000) -> float:
    """Microseconds the log's child process spends per record (hash + format)."""
    from deepaas.provenance._log_writer import Formatter

    formatter = Formatter("bench")
    body = b'{"status": "OK", "predictions": "hello, benchmark"}'
    now = time.time()
    start = time.perf_counter()
    for _ in range(samples):
        formatter.line(
            MODEL, now, now, json.dumps(BODY), body, "application/json", None
        )
    return (time.perf_counter() - start) / samples * 1e6


def server_side_cost(samples: int = 50_000) -> float:
    """CPU microseconds a record costs the server's own process (loop + thread).

    Runs begin() and record() as the predict handler does, paced like a
    server (the loop sleeps every ten calls, so the writer thread gets to
    send batches meanwhile), with and without them; the difference of the
    process's CPU time (all its threads) per call.  The child process's
    formatting is not in it (see :func:`writer_cost`).
    """
    import asyncio
    import tempfile

    from deepaas.model.wrapper import PredictOutcome, RawArguments
    from deepaas.provenance import PredictionLog

    outcome = PredictOutcome(b'{"status": "OK", "predictions": "hello, benchmark"}')

    async def run(log: PredictionLog | None) -> float:
        cpu = time.process_time()
        for number in range(samples):
            raw = RawArguments(json_body=dict(BODY))
            if log is not None:
                begun = await log.begin(raw)
                log.record(MODEL, begun, raw, outcome)
            if number % 10 == 0:
                await asyncio.sleep(0.0001)
        return (time.process_time() - cpu) / samples * 1e6

    with tempfile.TemporaryDirectory() as folder:
        log = PredictionLog(Path(folder) / "log.jsonl")
        log.open([])
        try:
            without = asyncio.run(run(None))
            with_log = asyncio.run(run(log))
        finally:
            log.close()
    return with_log - without


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="per cell (3)")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs (3)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--work-dir", type=Path, default=HERE / ".work" / "provenance",
        help="where the model package, logs and the provenance log go",
    )  # fmt: skip
    parser.add_argument(
        "--control", action="store_true",
        help="start the second server without the option too: the ratio then "
        "shows the noise of the method on this machine",
    )  # fmt: skip
    args = parser.parse_args(argv)
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    site = work / "site"
    write_model_package(site)
    body = work / "echo.body"
    body.write_text(json.dumps(BODY))
    records = work / "provenance.jsonl"
    records.unlink(missing_ok=True)
    servers = [
        build_server("off", work, site, []),
        build_server(
            "on", work, site, [] if args.control else ["--provenance-log", str(records)]
        ),
    ]
    print(
        f"# provenance overhead: {MODEL}, --workers 1, c{args.concurrency}, "
        f"{args.seconds} s x {args.rounds} rounds per setting, "
        f"{'wrk' if shutil.which('wrk') else 'aiohttp client'}; {cpu_name()}, "
        f"{os.cpu_count()} cores",
        flush=True,
    )
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with ServerSet(servers, work) as (off, on):
        # Warm both (first connections, caches); the "on" warm-up is recorded too.
        warm = [load(server, body, args.concurrency, 1)["ok"] for server in (off, on)]
        for number in range(args.rounds):
            order = (off, on) if number % 2 == 0 else (on, off)
            for server in order:
                cpu = server.cpu_seconds()
                result = load(server, body, args.concurrency, args.seconds)
                # CPU the server (and its worker) spent per answer: less
                # sensitive than req/s to other work on a shared machine.
                result["cpu_us"] = (server.cpu_seconds() - cpu) / result["ok"] * 1e6
                results[server.label].append(result)
                print(
                    f"round {number + 1} {server.label:>3}: {result['rps']:8.0f} req/s"
                    f"  {result['cpu_us']:6.1f} us CPU/answer"
                    f"  p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms"
                    f"  errors {result['errors']}",
                    flush=True,
                )
        answered = warm[1] + sum(r["ok"] for r in results["on"])
    if args.control:
        records.write_bytes(b"")
    lines = sum(1 for _ in open(records, "rb"))  # written at shutdown too
    off_rps = statistics.median(r["rps"] for r in results["off"])
    on_rps = statistics.median(r["rps"] for r in results["on"])
    ratio = on_rps / off_rps
    # Each round's on/off pair ran back to back: their ratio cancels the
    # slow drifts of a shared machine that the medians keep.
    pairs = [
        on["rps"] / off["rps"]
        for on, off in zip(results["on"], results["off"], strict=True)
    ]
    pair_ratio = statistics.median(pairs)
    off_cpu = statistics.median(r["cpu_us"] for r in results["off"])
    on_cpu = statistics.median(r["cpu_us"] for r in results["on"])
    print(f"\nmedian req/s: off {off_rps:.0f}, on {on_rps:.0f}")
    print(f"ratio of the medians on/off: {ratio:.3f}")
    print(
        f"median of the rounds' on/off ratios: {pair_ratio:.3f} "
        f"({(1 - pair_ratio) * 100:+.1f}% cost; target <= 5%; rounds: "
        f"{', '.join(f'{p:.2f}' for p in pairs)})"
    )
    print(
        f"median server CPU per answer: off {off_cpu:.1f} us, on {on_cpu:.1f} us "
        f"(ratio {on_cpu / off_cpu:.3f})"
    )
    print(
        f"provenance log: {lines - 1} prediction records (+1 server line) for "
        f"{answered} answers, {records.stat().st_size / max(1, lines):.0f} bytes "
        "a line"
    )
    print(
        f"server process (loop + writer thread): {server_side_cost():.1f} us CPU "
        f"per record; log writer process: {writer_cost():.1f} us per record "
        "(hash + format)"
    )
    return 0 if results["on"] and results["off"] else 1


if __name__ == "__main__":
    sys.exit(main())
