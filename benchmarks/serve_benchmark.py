"""Serving benchmark: deepaas against DEEPaaS 2.6.0, LitServe 0.2.19 and a bare floor.

For each benchmark model (echo, small MLP, wide MLP, 100 KB upload) it starts
on loopback, side by side:

* ``deepaas-2.6``: the existing DEEPaaS 2.6.0 from PyPI, in its own venv,
  with its defaults (``--workers 1``);
* ``ours*``: deepaas from this checkout with the settings that suit the
  model (see ``CASES``);
* ``litserve*``: LitServe 0.2.19, in its own venv, serving the same models
  written as LitServe APIs (``_litserve_server.py``; echo and the MLPs;
  the wide MLP also batched with our batch settings);
* ``floor``: a bare aiohttp handler doing the same work in-process
  (``_floor_server.py``);

drives each with ``wrk`` (or an aiohttp client when wrk is missing) at
concurrency 1, 16 and 64, cells interleaved round-robin and repeated, and
prints throughput, p50/p99 latency and server memory, with ratios to DEEPaaS
2.6.0, to LitServe and to the floor, and what the access log, the metrics
and token checking cost (issue 11): variants of the same server with each
turned off or on, measured side by side.  Then, unless ``--startup-repeats
0``, the start-up of the floor, deepaas, DEEPaaS 2.6.0 and LitServe on echo
and the small MLP (``startup_benchmark.py``'s measurement: launch to first
correct answer, memory idle and after load), and the targets as PASS/FAIL.

    .venv/bin/python benchmarks/serve_benchmark.py            # full run
    .venv/bin/python benchmarks/serve_benchmark.py --quick    # smoke run

See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench_env import (  # noqa: E402
    MODELS,
    BenchEnv,
    cpu_name,
    deepaas_revision,
    ensure_litserve_venv,
    prepare,
)
from _bench_servers import (  # noqa: E402
    Server,
    ServerSet,
    free_port,
    machine_busy_seconds,
)

JSON_TYPE = "application/json"
BOUNDARY = "deepaasbenchboundary7MA4YWxkTrZu0gW"
UPLOAD_SIZE = 100 * 1024
DEEPAAS = "deepaas-2.6"
FLOOR = "floor"
#: LitServe's virtualenv under the work dir, shared with startup_benchmark.py.
LITSERVE_VENV = "venv-litserve-0.2.19"
LITSERVE = "litserve"
LITSERVE_BATCHED = "litserve-batched"
BENCH_TOKEN = "bench-token-0123456789abcdef"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One server of a case: who serves which entry point, with what flags."""

    label: str
    kind: str  # deepaas | ours | litserve | floor
    entry: str
    flags: tuple[str, ...] = ()
    settings: str = ""
    #: Served with a bearer token required (--auth-token-file), sent by the
    #: load generator.
    token: bool = False
    #: Served from this source tree instead of this checkout (--before-source).
    source: str = ""


@dataclasses.dataclass(frozen=True)
class Case:
    """A benchmark model, its request body and the servers compared on it."""

    key: str
    upload: bool
    variants: tuple[Variant, ...]
    check: Callable[[Any], bool]


def _deepaas(entry: str) -> Variant:
    return Variant(DEEPAAS, "deepaas", entry, settings="defaults (--workers 1)")


def _floor(entry: str) -> Variant:
    return Variant(FLOOR, "floor", entry, settings="bare aiohttp, model on the loop")


def _litserve(entry: str, batched: bool = False) -> Variant:
    if batched:
        return Variant(LITSERVE_BATCHED, "litserve", entry,
                       settings="LitServe 0.2.19, LitAPI(max_batch_size=32, "
                       "batch_timeout=0.005)")
    return Variant(LITSERVE, "litserve", entry,
                   settings="LitServe 0.2.19 defaults (one inference worker)")


#: What the access log, the metrics and token checking cost: ``ours-inline``
#: (the defaults: metrics on, access-log lines hidden by --log-level WARNING)
#: against itself with each turned off or on.  Left out of the targets.
COST_VARIANTS = {
    "ours-inline-bare": "no metrics, no access log: nothing counted or logged",
    "ours-inline-log": "defaults, access log written (--log-level INFO)",
    "ours-inline-token": "defaults, a bearer token checked on every request",
}
#: Served again from each --before-source tree, as ``<label>@<folder name>``.
BEFORE_LABELS = ("ours-inline", "ours-w1")
#: What marks a label served from a --before-source tree.
BEFORE = "@"


def _cost_variants(entry: str) -> tuple[Variant, ...]:
    flags = ("--workers", "0")
    return (
        Variant("ours-inline-bare", "ours", entry,
                (*flags, "--metrics", "false", "--access-log", "false"),
                "inline, --metrics false --access-log false"),
        Variant("ours-inline-log", "ours", entry, (*flags, "--log-level", "INFO"),
                "inline, access log on (--log-level INFO)"),
        Variant("ours-inline-token", "ours", entry, flags,
                "inline, --auth-token-file (bearer token)", token=True),
    )


CASES = {
    "echo": Case(
        "echo", False,
        (_deepaas("bench_echo"),
         Variant("ours", "ours", "bench_echo", ("--workers", "0"),
                 "--workers 0 (threads)"),
         Variant("ours-inline", "ours", "bench_echo_inline", ("--workers", "0"),
                 'deepaas_execution = "async" (on the loop)'),
         Variant("ours-w1", "ours", "bench_echo", ("--workers", "1"),
                 "--workers 1 (one process: the default)"),
         *_cost_variants("bench_echo_inline"),
         _litserve("bench_echo"),
         _floor("bench_echo")),
        lambda p: p == "hello, benchmark",
    ),
    "small_mlp": Case(
        "small_mlp", False,
        (_deepaas("bench_small_mlp"),
         Variant("ours", "ours", "bench_small_mlp", ("--workers", "0"),
                 "--workers 0 (in-process threads)"),
         Variant("ours-inline", "ours", "bench_small_mlp_inline", ("--workers", "0"),
                 'deepaas_execution = "async" (on the loop)'),
         Variant("ours-w1", "ours", "bench_small_mlp", ("--workers", "1"),
                 "--workers 1 (one process)"),
         Variant("ours-batched", "ours", "bench_small_mlp_batched",
                 ("--workers", "1", "--max-queue", "256"),
                 "--workers 1, predict_batch (max 32, 5 ms)"),
         *_cost_variants("bench_small_mlp_inline"),
         _litserve("bench_small_mlp"),
         _litserve("bench_small_mlp_batched", batched=True),
         _floor("bench_small_mlp")),
        lambda p: isinstance(p, list) and len(p) == 10,
    ),
    "wide_mlp": Case(
        "wide_mlp", False,
        (_deepaas("bench_wide_mlp"),
         Variant("ours", "ours", "bench_wide_mlp",
                 ("--workers", "1", "--max-queue", "256"),
                 "--workers 1, predict only"),
         Variant("ours-batched", "ours", "bench_wide_mlp_batched",
                 ("--workers", "1", "--max-queue", "256"),
                 "--workers 1, predict_batch (max 32, 5 ms)"),
         _litserve("bench_wide_mlp"),
         _litserve("bench_wide_mlp_batched", batched=True),
         _floor("bench_wide_mlp")),
        lambda p: isinstance(p, list) and len(p) == 10,
    ),
    "upload": Case(
        "upload", True,
        (_deepaas("bench_upload"),
         Variant("ours", "ours", "bench_upload", ("--workers", "0"), "--workers 0"),
         _floor("bench_upload")),
        lambda p: isinstance(p, dict) and p.get("size") == UPLOAD_SIZE,
    ),
}


# -- request bodies ----------------------------------------------------------


def write_body(case: Case, work: Path) -> tuple[Path, str]:
    """The one request body every server of ``case`` receives."""
    rng = random.Random(0)
    path = work / "bodies" / f"{case.key}.body"
    path.parent.mkdir(parents=True, exist_ok=True)
    if case.upload:
        head = (
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            "filename=\"blob.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        path.write_bytes(head + rng.randbytes(UPLOAD_SIZE) + f"\r\n--{BOUNDARY}--\r\n"
                         .encode())
        return path, f"multipart/form-data; boundary={BOUNDARY}"
    if case.key == "echo":
        body: dict[str, Any] = {"message": "hello, benchmark"}
    else:
        body = {"data": [round(rng.random(), 4) for _ in range(784)]}
    path.write_text(json.dumps(body))
    return path, JSON_TYPE


# -- servers -----------------------------------------------------------------


def build_server(variant: Variant, case: Case, env: BenchEnv,
                 litserve: Path | None = None) -> Server:
    """``variant`` serving ``case`` on a free port; ``litserve``: LitServe's python."""
    port = free_port()
    tmp = env.work / "tmp" / f"{case.key}-{variant.label}"
    tmp.mkdir(parents=True, exist_ok=True)
    server_env = {k: v for k, v in os.environ.items() if k != "DEEPAAS_V2_MODEL"}
    path = [str(env.site)]
    if variant.source:
        path.insert(0, variant.source)
    elif variant.kind == "ours" and env.ours_source is not None:
        path.insert(0, str(env.ours_source))
    server_env.update(PYTHONPATH=os.pathsep.join(path), TMPDIR=str(tmp),
                      OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    common = ["--listen-ip", "127.0.0.1", "--listen-port", str(port),
              "--model-name", variant.entry]
    predict_path = f"/v2/models/{variant.entry}/predict/"
    if variant.kind == "deepaas":
        command = [*env.deepaas_command(), *common, *variant.flags]
        ready = "/v2/models/"
    elif variant.kind == "ours":
        command = [*env.ours_command(), *common, "--log-level", "WARNING",
                   "--shutdown-timeout", "2", *variant.flags]
        ready = "/ready"
        if variant.token:
            tokens = env.work / "bench-tokens.txt"
            tokens.write_text(BENCH_TOKEN + "\n")
            command += ["--auth-token-file", str(tokens)]
    elif variant.kind == "litserve":
        if litserve is None:
            raise ValueError(f"{variant.label}: LitServe's virtualenv is not prepared")
        command = [str(litserve), str(HERE / "_litserve_server.py"),
                   "--port", str(port), "--model", variant.entry]
        ready = "/health"  # 200 once the inference worker has run setup()
        predict_path = "/predict"
    else:
        command = [str(env.ours_python), str(HERE / "_floor_server.py"),
                   "--port", str(port), "--model", MODELS[variant.entry]]
        ready = "/health"
        predict_path = "/predict/upload" if case.upload else "/predict/json"
    return Server(
        label=variant.label, settings=variant.settings, command=command,
        env=server_env, port=port, ready_path=ready, predict_path=predict_path,
        log=env.work / "logs" / f"{case.key}-{variant.label}.log",
        headers={"Authorization": f"Bearer {BENCH_TOKEN}"} if variant.token else {},
    )


# -- load --------------------------------------------------------------------


def loadgen_command(kind: str, url: str, body: Path, ctype: str, concurrency: int,
                    duration: int, headers: dict[str, str] | None = None) -> list[str]:
    extra = [f"{k}: {v}" for k, v in (headers or {}).items()][:1]
    if kind == "wrk":
        return ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--timeout", "30s",
                "-s", str(HERE / "wrk_post.lua"), url, "--", str(body), ctype, *extra]
    return [sys.executable, str(HERE / "_loadgen.py"), url, str(body), ctype,
            "--concurrency", str(concurrency), "--duration", str(duration),
            *(["--header", extra[0]] if extra else [])]


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def run_cell(server: Server, loadgen: str, body: Path, ctype: str,
             concurrency: int, duration: int) -> dict[str, Any]:
    """Drive one server for ``duration`` seconds; sample its memory meanwhile."""
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            peak[0] = max(peak[0], server.memory_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    busy0, server0, own0 = machine_busy_seconds(), server.cpu_seconds(), _own_cpu()
    start = time.monotonic()
    sampler.start()
    try:
        done = subprocess.run(
            loadgen_command(loadgen, server.url, body, ctype, concurrency, duration,
                            server.headers),
            capture_output=True, text=True, timeout=duration + 90,
        )
    finally:
        stop.set()
        sampler.join()
    elapsed = time.monotonic() - start
    server_cpu = server.cpu_seconds() - server0
    own_cpu = _own_cpu() - own0  # this script and the load generator
    other_cpu = machine_busy_seconds() - busy0 - server_cpu - own_cpu
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"load generator failed on {server.label}: "
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1].split(" ", 1)[1])
    result["ok_rps"] = (result["requests"] - result["errors"]) / result["duration_s"]
    result["server_cores"] = server_cpu / elapsed
    result["loadgen_cores"] = own_cpu / elapsed
    result["other_cores"] = max(0.0, other_cpu / elapsed)
    result["rss_mb"] = max(peak[0], server.memory_mb())
    result["pss_mb"] = server.memory_mb(pss=True)
    return result


def sanity_check(server: Server, case: Case, body: Path, ctype: str) -> Any:
    status, answer = server.post(body.read_bytes(), ctype)
    if status != 200 or not isinstance(answer, dict):
        raise RuntimeError(f"{case.key} on {server.label}: HTTP {status}: {answer}")
    if not case.check(answer.get("predictions")):
        raise RuntimeError(f"{case.key} on {server.label}: unexpected answer {answer}")
    return answer["predictions"]


def run_case(case: Case, env: BenchEnv, args: argparse.Namespace,
             results: list[dict[str, Any]], failures: list[str],
             litserve: Path | None = None) -> None:
    variants = [v for v in case.variants
                if not (v.kind == "deepaas" and env.deepaas_venv is None)
                and not (v.kind == "litserve" and litserve is None)]
    variants += [
        dataclasses.replace(v, label=f"{v.label}{BEFORE}{before.name}",
                            settings=f"{v.label} from {before}", source=str(before))
        for before in args.before_source for v in variants
        if v.label in BEFORE_LABELS
    ]
    variants = [v for v in variants
                if not args.servers or v.label.split(BEFORE)[0] in args.servers]
    body, ctype = write_body(case, env.work)
    servers = [build_server(v, case, env, litserve) for v in variants]
    print(f"\n== {case.key}: starting {', '.join(s.label for s in servers)}",
          flush=True)
    with ServerSet(list(servers), env.work):  # stops all, failed ones too
        answers = {}
        for server in list(servers):
            try:
                answers[server.label] = sanity_check(server, case, body, ctype)
            except RuntimeError as exc:  # measure the others, report this one
                print(f"  FAILED, not measured: {exc}", flush=True)
                failures.append(str(exc))
                servers.remove(server)
        if len({json.dumps(a) for a in answers.values()}) > 1:
            print(f"  warning: the servers answer differently: {answers}")
        for server in servers:  # warm-up, discarded
            run_cell(server, args.loadgen, body, ctype, 16, args.warmup)
        for rep in range(args.repeats):
            for concurrency in args.concurrency:
                shift = rep % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    cell = run_cell(server, args.loadgen, body, ctype, concurrency,
                                    args.duration)
                    cell.update(case=case.key, server=server.label,
                                settings=server.settings, concurrency=concurrency,
                                repeat=rep)
                    results.append(cell)
                    print(f"  {server.label:>13} c{concurrency:<3} rep{rep} "
                          f"{cell['ok_rps']:9.1f} req/s  p50 {cell['p50_ms']:8.2f} ms"
                          f"  p99 {cell['p99_ms']:8.2f} ms  errors {cell['errors']}"
                          f"  RSS {cell['rss_mb']:.0f} MB  CPU server "
                          f"{cell['server_cores']:.2f} loadgen "
                          f"{cell['loadgen_cores']:.2f} other "
                          f"{cell['other_cores']:.2f}", flush=True)
                    time.sleep(0.3)


# -- start-up ----------------------------------------------------------------


def _startup_module() -> Any:
    """``startup_benchmark``, imported when needed: it imports this module."""
    import startup_benchmark

    return startup_benchmark


def _startup_servers(env: BenchEnv, args: argparse.Namespace,
                     litserve: Path | None) -> list[str]:
    """The start-up benchmark's servers that this run's options select.

    Its ``ours`` is ``deepaas-run`` with its defaults (one worker process):
    it runs whenever any ``ours*`` server is selected.
    """
    def chosen(label: str) -> bool:
        if not args.servers:
            return True
        if label == "ours":
            return any(s.startswith("ours") for s in args.servers)
        return label in args.servers

    available = {DEEPAAS: env.deepaas_venv is not None, LITSERVE: litserve is not None}
    return [label for label in _startup_module().SERVERS
            if available.get(label, True) and chosen(label)]


def run_startup(env: BenchEnv, args: argparse.Namespace,
                litserve: Path | None) -> dict[str, Any] | None:
    """``startup_benchmark.py``'s measurement on echo and the small MLP.

    Every selected server is started ``--startup-repeats`` times (after one
    discarded start), interleaved, each timed from launch to its first
    correct answer.  None when skipped (``--startup-repeats 0``, or no
    start-up case or server selected).
    """
    startup = _startup_module()
    cases = [c for c in startup.START_CASES if c in args.only]
    servers = _startup_servers(env, args, litserve)
    if args.startup_repeats < 1 or not cases or not servers:
        return None
    sargs = startup.parse_args([
        "--repeats", str(args.startup_repeats), "--only", ",".join(cases),
        "--servers", ",".join(servers),
        *(["--requests", "50"] if args.quick else []),
    ])
    print(f"\n== start-up: {', '.join(servers)} on {', '.join(cases)}; "
          f"{sargs.warmup} discarded + {sargs.repeats} measured starts each",
          flush=True)
    started = time.monotonic()
    runs, failures = startup.measure(env, sargs, litserve)
    return {
        "servers": servers, "repeats": sargs.repeats, "requests": sargs.requests,
        "elapsed_s": time.monotonic() - started,
        "runs": [r for v in runs.values() for r in v],
        "table": startup.tabulate(runs, sargs), "failures": failures,
    }


def print_startup(result: dict[str, Any]) -> None:
    startup = _startup_module()
    print(f"\n## Start-up ({result['repeats']} starts per server, interleaved; "
          f"{result['elapsed_s']:.0f} s)")
    print(startup.legend(result["requests"]))
    startup.print_table(result["table"])


# -- report ------------------------------------------------------------------


def aggregate(results: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict]:
    """Per (case, server, concurrency): means over repeats, memory maxima."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for cell in results:
        key = (cell["case"], cell["server"], cell["concurrency"])
        groups.setdefault(key, []).append(cell)
    table = {}
    for key, cells in groups.items():
        n = len(cells)
        rps = [c["ok_rps"] for c in cells]
        table[key] = {
            "settings": cells[0]["settings"],
            "rps": sum(rps) / n,
            "spread": (max(rps) - min(rps)) / max(1e-9, sum(rps) / n),
            "p50_ms": sum(c["p50_ms"] for c in cells) / n,
            "p99_ms": sum(c["p99_ms"] for c in cells) / n,
            "errors": sum(c["errors"] for c in cells),
            "rss_mb": max(c["rss_mb"] for c in cells),
            "pss_mb": max(c["pss_mb"] for c in cells),
            "server_cores": sum(c["server_cores"] for c in cells) / n,
            "other_cores": max(c["other_cores"] for c in cells),
        }
    return table


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def print_table(table: dict[tuple[str, str, int], dict]) -> None:
    cases = list(dict.fromkeys(k[0] for k in table))
    for case in cases:
        print(f"\n### {case}\n")
        print("| conc | server | settings | req/s | p50 ms | p99 ms | errors | "
              "RSS MB | PSS MB | server CPU | other CPU | vs DEEPaaS 2.6 | "
              "vs LitServe | vs floor |")
        print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        servers = list(dict.fromkeys(k[1] for k in table if k[0] == case))
        concurrencies = sorted({k[2] for k in table if k[0] == case})
        for conc in concurrencies:
            base = table.get((case, DEEPAAS, conc), {}).get("rps")
            floor = table.get((case, FLOOR, conc), {}).get("rps")
            for server in servers:
                row = table.get((case, server, conc))
                if row is None:
                    continue
                lit = table.get((case, _litserve_peer(server), conc), {}).get("rps")
                print(f"| {conc} | {server} | {row['settings']} | {row['rps']:.0f} "
                      f"(±{row['spread'] * 50:.0f}%) | {row['p50_ms']:.2f} | "
                      f"{row['p99_ms']:.2f} | {row['errors']} | {row['rss_mb']:.0f} | "
                      f"{row['pss_mb']:.0f} | {row['server_cores']:.2f} | "
                      f"{row['other_cores']:.2f} | {_ratio(row['rps'], base)} | "
                      f"{_ratio(row['rps'], lit)} | {_ratio(row['rps'], floor)} |")


def _litserve_peer(server: str) -> str:
    """The LitServe server a row is compared with: batched with batched."""
    return LITSERVE_BATCHED if server.endswith("batched") else LITSERVE


def target_checks(
    table: dict[tuple[str, str, int], dict],
    startup: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> list[tuple[str, str]]:
    """The targets, as (verdict, explanation).

    ``table``: the throughput cells (see :func:`aggregate`); ``startup``:
    the start-up medians per case and server (``startup_benchmark.tabulate``).
    """

    def get(case: str, server: str, conc: int, key: str) -> float | None:
        row = table.get((case, server, conc))
        return None if row is None else row[key]

    def verdict(label: str, value: float | None, limit: float | None,
                ok: Callable[[float, float], bool], how: str) -> tuple[str, str]:
        if value is None or limit is None:
            return "SKIP", f"{label}: not measured"
        return ("PASS" if ok(value, limit) else "FAIL"), f"{label}: {how}"

    def best_ours(case: str, conc: int) -> tuple[str, float | None]:
        rows = [(row["rps"], server) for (c, server, n), row in table.items()
                if c == case and n == conc and server.startswith("ours")
                and server != "ours-batched"
                and server not in COST_VARIANTS and BEFORE not in server]
        if not rows:
            return "ours", None
        rate, server = max(rows)
        return server, rate

    checks = []
    for case, times, share in (("echo", 10, 0.5), ("small_mlp", 3, 0.7)):
        server, ours = best_ours(case, 16)
        old, floor = get(case, DEEPAAS, 16, "rps"), get(case, FLOOR, 16, "rps")
        checks.append(verdict(
            f"{case} c16 >= {times}x DEEPaaS 2.6", ours, old,
            lambda a, b, t=times: a >= t * b,
            f"{server} {ours or 0:.0f} vs {old or 0:.0f} req/s = "
            f"{_ratio(ours, old)}"))
        checks.append(verdict(
            f"{case} c16 >= {share:.0%} of floor", ours, floor,
            lambda a, b, s=share: a >= s * b,
            f"{server} {ours or 0:.0f} vs {floor or 0:.0f} req/s = "
            f"{(ours or 0) / (floor or 1):.0%}"))
        lit = get(case, LITSERVE, 16, "rps")
        checks.append(verdict(
            f"{case} c16 >= LitServe 0.2.19", ours, lit, lambda a, b: a >= b,
            f"{server} {ours or 0:.0f} vs {lit or 0:.0f} req/s = "
            f"{_ratio(ours, lit)}"))
    rps = {s: get("wide_mlp", s, 64, "rps") for s in ("ours", "ours-batched")}
    batched, plain = rps["ours-batched"], rps["ours"]
    checks.append(verdict(
        "wide_mlp c64 batched >= 3x our unbatched", batched, plain,
        lambda a, b: a >= 3 * b,
        f"{batched or 0:.0f} vs {plain or 0:.0f} req/s = {_ratio(batched, plain)}"))
    # Batching against batching where serving bounds the rate (the small
    # MLP); on the wide MLP the network's arithmetic bounds both servers
    # alike, so its "vs LitServe" column is only shown.
    small, lit = (get("small_mlp", s, 64, "rps")
                  for s in ("ours-batched", LITSERVE_BATCHED))
    checks.append(verdict(
        "small_mlp c64 batched >= 5x LitServe batched", small, lit,
        lambda a, b: a >= 5 * b,
        f"{small or 0:.0f} vs {lit or 0:.0f} req/s = {_ratio(small, lit)}"))
    p99, old_p99 = (get("wide_mlp", s, 64, "p99_ms") for s in ("ours-batched", DEEPAAS))
    checks.append(verdict(
        "wide_mlp c64 batched p99 < DEEPaaS 2.6 p99", p99, old_p99,
        lambda a, b: a < b, f"{p99 or 0:.1f} vs {old_p99 or 0:.1f} ms"))
    # The default path: deepaas-run as shipped (one worker process,
    # metrics and access log on) against the bare floor.
    for case, conc, share in (("echo", 16, 0.5), ("small_mlp", 16, 0.9),
                              ("small_mlp", 64, 0.9)):
        ours, floor = (get(case, s, conc, "rps") for s in ("ours-w1", FLOOR))
        checks.append(verdict(
            f"{case} c{conc} default (ours-w1) >= {share:.0%} of floor", ours, floor,
            lambda a, b, s=share: a >= s * b,
            f"{ours or 0:.0f} vs {floor or 0:.0f} req/s = "
            f"{(ours or 0) / (floor or 1):.0%}"))
    rss = get("small_mlp", "ours-w1", 16, "rss_mb")
    floor_rss = get("small_mlp", FLOOR, 16, "rss_mb")
    checks.append(verdict(
        "small_mlp one-worker server RSS <= 1.3x floor", rss, floor_rss,
        lambda a, b: a <= 1.3 * b,
        f"{rss or 0:.0f} vs {floor_rss or 0:.0f} MB = {_ratio(rss, floor_rss)}"))
    checks += _startup_checks(startup or {}, verdict)
    return checks


def _startup_checks(
    startup: dict[str, dict[str, dict[str, Any]]],
    verdict: Callable[..., tuple[str, str]],
) -> list[tuple[str, str]]:
    """Start-up targets on the small MLP: time to first answer and idle memory."""
    rows = startup.get("small_mlp", {})

    def get(server: str, key: str) -> float | None:
        return rows[server][key] if server in rows else None

    first = get("ours", "first_answer_s")
    checks = []
    for other, label, ok, how in (
        (FLOOR, "<= 1.3x floor", lambda a, b: a <= 1.3 * b, "floor"),
        (DEEPAAS, "faster than DEEPaaS 2.6", lambda a, b: a < b, "DEEPaaS 2.6"),
        (LITSERVE, "faster than LitServe 0.2.19", lambda a, b: a < b, "LitServe"),
    ):
        theirs = get(other, "first_answer_s")
        checks.append(verdict(
            f"small_mlp start-up {label}", first, theirs, ok,
            f"median first answer {first or 0:.2f} s vs {how} {theirs or 0:.2f} s "
            f"= {_ratio(first, theirs)}"))
    rss, floor_rss = get("ours", "idle_rss_mb"), get(FLOOR, "idle_rss_mb")
    checks.append(verdict(
        "small_mlp one-worker server idle RSS <= 1.3x floor", rss, floor_rss,
        lambda a, b: a <= 1.3 * b,
        f"{rss or 0:.0f} vs {floor_rss or 0:.0f} MB right after the first answer "
        f"= {_ratio(rss, floor_rss)}"))
    return checks


def cost_lines(table: dict[tuple[str, str, int], dict]) -> list[str]:
    """What each feature costs: a variant against the same server without it."""
    pairs = (
        ("metrics (counting each request)", "ours-inline", "ours-inline-bare"),
        ("access log written", "ours-inline-log", "ours-inline"),
        ("metrics + access log", "ours-inline-log", "ours-inline-bare"),
        ("bearer token checked", "ours-inline-token", "ours-inline"),
    )
    befores = sorted({k[1] for k in table if BEFORE in k[1]})
    pairs += tuple((f"this tree against {b}, both with their defaults",
                    b.split(BEFORE)[0], b) for b in befores)
    lines = []
    for case, conc in sorted({(k[0], k[2]) for k in table}):
        for what, with_it, without in pairs:
            on = table.get((case, with_it, conc))
            off = table.get((case, without, conc))
            if on is None or off is None:
                continue
            cpu_on, cpu_off = _cpu_us(on), _cpu_us(off)
            lines.append(
                f"- {case} c{conc}, {what}: {with_it} {on['rps']:.0f} vs {without} "
                f"{off['rps']:.0f} req/s = {on['rps'] / off['rps']:.1%}; server CPU "
                f"per request {cpu_on:.0f} vs {cpu_off:.0f} us = "
                f"{cpu_on / cpu_off:.1%} (p50 {on['p50_ms']:.2f} vs "
                f"{off['p50_ms']:.2f} ms)")
    return lines


def _cpu_us(row: dict[str, Any]) -> float:
    """Server CPU time per answered request, in microseconds.

    Steadier than req/s when other programs share the cores: it counts
    the work the server did, not how much CPU it was given.
    """
    return row["server_cores"] / max(row["rps"], 1e-9) * 1e6


# -- command line ------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark deepaas against DEEPaaS 2.6.0 and a bare aiohttp "
        "floor, on loopback."
    )
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 s cells, one repeat, 1 s warm-up")
    parser.add_argument("--only", default=",".join(CASES),
                        help=f"comma-separated cases (default: {','.join(CASES)})")
    parser.add_argument("--duration", type=int, help="seconds per cell (default 6)")
    parser.add_argument("--repeats", type=int, help="rounds over all cells (default 2)")
    parser.add_argument("--warmup", type=int, help="warm-up seconds per server")
    parser.add_argument("--before-source", type=Path, action="append", default=[],
                        help="also serve ours-inline and ours-w1 from this source "
                        "tree (the folder holding deepaas/, e.g. `git archive` of "
                        "an older commit) as <label>@<folder name>: what the "
                        "changes since cost, side by side; repeat for several "
                        "trees")
    parser.add_argument("--servers", default="",
                        help="comma-separated server labels to run (default: all), "
                        "e.g. ours-inline,ours-inline-bare,floor")
    parser.add_argument("--concurrency", default="1,16,64",
                        help="comma-separated concurrencies (default 1,16,64)")
    parser.add_argument("--skip-deepaas", action="store_true",
                        help="do not install or run DEEPaaS 2.6.0 (no package index)")
    parser.add_argument("--skip-litserve", action="store_true",
                        help="do not install or run LitServe 0.2.19 (no package index)")
    parser.add_argument("--startup-repeats", type=int, default=5,
                        help="after the throughput cells, time this many starts "
                        "per server on echo and small_mlp, interleaved, from "
                        "launch to first correct answer (default 5; 0: skip)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "aiohttp"),
                        default="auto", help="load generator (default: wrk if found)")
    parser.add_argument("--work-dir", type=Path, default=HERE / ".work",
                        help="venvs, logs and results (default benchmarks/.work)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--ours-source", type=Path,
                        help="serve deepaas from this source tree (the folder "
                        "holding deepaas/), e.g. a git worktree of another branch")
    args = parser.parse_args(argv)
    args.duration = args.duration or (2 if args.quick else 6)
    args.repeats = args.repeats or (1 if args.quick else 2)
    args.warmup = args.warmup or (1 if args.quick else 2)
    if min(args.duration, args.repeats, args.warmup) < 1:
        parser.error("--duration, --repeats and --warmup must be >= 1")
    if args.startup_repeats < 0:
        parser.error(f"--startup-repeats must be >= 0 (got {args.startup_repeats})")
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not args.concurrency or min(args.concurrency) < 1:
        parser.error("--concurrency takes positive integers, e.g. 1,16,64")
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    args.servers = {v.strip() for v in args.servers.split(",") if v.strip()}
    args.before_source = [b.resolve() for b in args.before_source]
    for before in args.before_source:
        if not (before / "deepaas" / "__init__.py").is_file():
            parser.error(f"--before-source {before}: no deepaas/ there")
    unknown = [c for c in args.only if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose among {', '.join(CASES)}")
    if args.loadgen == "auto":
        args.loadgen = "wrk" if shutil.which("wrk") else "aiohttp"
    elif args.loadgen == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is missing (apt-get install wrk); use --loadgen aiohttp")
    return args


def _describe_machine(args: argparse.Namespace, torch_version: str) -> str:
    return (f"{os.cpu_count()} cores ({cpu_name()}), "
            f"Python {platform.python_version()}, torch {torch_version}, "
            f"deepaas at {deepaas_revision(args.ours_source)}; load generator "
            f"{args.loadgen} on the same cores; {args.duration} s cells x "
            f"{args.repeats} repeats, interleaved")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through every ServerSet

    signal.signal(signal.SIGTERM, on_term)
    env = prepare(args.work_dir.resolve(), with_deepaas=not args.skip_deepaas)
    if args.ours_source is not None:
        if not (args.ours_source / "deepaas" / "__init__.py").is_file():
            raise SystemExit(f"--ours-source {args.ours_source}: no deepaas/ there")
        env.ours_source = args.ours_source.resolve()
    torch_version = subprocess.run(
        [str(env.ours_python), "-c", "import torch; print(torch.__version__)"],
        capture_output=True, text=True).stdout.strip()
    litserve = None
    if not args.skip_litserve and any(
        v.kind == "litserve" and (not args.servers or v.label in args.servers)
        for key in args.only for v in CASES[key].variants
    ):
        litserve = ensure_litserve_venv(env.work / LITSERVE_VENV,
                                        env.work / "setup.log")
    header = _describe_machine(args, torch_version)
    print(header, flush=True)
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    started = time.monotonic()
    for key in args.only:
        run_case(CASES[key], env, args, results, failures, litserve)
    throughput_s = time.monotonic() - started
    startup = run_startup(env, args, litserve)
    if startup is not None:
        failures += [f"start-up {f}" for f in startup["failures"]]
    table = aggregate(results)
    print(f"\n## Results ({header}; {throughput_s:.0f} s)")
    print("req/s: successful requests per second, mean over repeats (± half the "
          "spread); p50/p99: mean over repeats; RSS/PSS: server process tree, max; "
          "server CPU: cores the server tree used; other CPU: cores used by "
          "processes outside the benchmark (max).")
    print_table(table)
    busiest = max((row["other_cores"] for row in table.values()), default=0.0)
    if busiest > 0.2:
        print(f"\nwarning: other processes used up to {busiest:.2f} cores during "
              "some cells (column 'other CPU'); those numbers are perturbed")
    costs = cost_lines(table)
    if costs:
        print("\n## What the access log, metrics and token checking cost (issue 11)\n")
        print("\n".join(costs))
    if startup is not None:
        print_startup(startup)
    checks = target_checks(table, startup["table"] if startup else None)
    print("\n## Targets\n")
    for verdict, text in checks:
        print(f"- {verdict}  {text}")
    for failure in failures:
        print(f"- ERROR {failure}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.json or env.work / "results" / f"serve-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"header": header, "cells": results,
                               "checks": checks, "costs": costs,
                               "startup": startup, "failures": failures},
                              indent=1))
    print(f"\nraw results: {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
