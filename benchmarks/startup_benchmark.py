"""Start-up benchmark: from launch to the first correct answer, side by side.

For the echo and the small MLP (784-512-512-10, torch) models it starts, one
after the other and interleaved (A, B, C, D, then again, the order rotating
each round), on loopback:

* ``floor``: bare aiohttp calling the model on the event loop
  (``_floor_server.py``);
* ``ours``: ``deepaas-run`` from this checkout with its default options
  (one worker process);
* ``deepaas-2.6``: the existing DEEPaaS 2.6.0, in its own venv, defaults;
* ``litserve``: LitServe 0.2.19, in its own venv, defaults (one inference
  worker process), serving the same models written as LitServe APIs
  (``deepaas_bench_models/litserve_*.py``).

Each start is timed from just before the process is launched to the first
correct prediction: the predict endpoint is polled with the case's real
request from the moment of launch (a refused connection is retried after
``--poll-interval``; a non-2xx answer is counted and retried).  Then the
RSS of the process tree is read (idle), ``--requests`` more predictions are
sent one after the other on one connection, and the RSS (and PSS) is read
again (after load).  The table reports medians over ``--repeats`` starts,
with ratios to the floor.

    .venv/bin/python benchmarks/startup_benchmark.py --repeats 5   # ~4 min

See docs/benchmarks.md, section "Start-up".
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import statistics
import sys
import time
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
    CLOCK_TICKS,
    HOST,
    Server,
    free_port,
    machine_busy_seconds,
    process_tree,
    tree_memory_mb,
)
from serve_benchmark import CASES, write_body  # noqa: E402

SERVERS = ("floor", "ours", "deepaas-2.6", "litserve")
START_CASES = {"echo": "bench_echo", "small_mlp": "bench_small_mlp"}
LITSERVE_VENV = "venv-litserve-0.2.19"


def tree_cpu_total(pid: int) -> float:
    """CPU seconds used by a process tree, children already reaped included.

    A probe process that has come and gone counts too: its time is in its
    parent's ``cutime``/``cstime`` once reaped.
    """
    ticks = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            ticks += sum(int(v) for v in fields[11:15])
        except (OSError, ValueError, IndexError):
            continue
    return ticks / CLOCK_TICKS


def build(
    label: str,
    case: str,
    env: BenchEnv,
    litserve: Path | None,
    before: dict[str, Path] | None = None,
) -> Server:
    """The server ``label`` serving ``case``, on a fresh port.

    ``before`` maps ``ours@<folder>`` labels to the older source trees that
    ``--before-source`` named.
    """
    entry = START_CASES[case]
    port = free_port()
    tmp = env.work / "tmp" / f"startup-{case}-{label}"
    tmp.mkdir(parents=True, exist_ok=True)
    server_env = {k: v for k, v in os.environ.items() if k != "DEEPAAS_V2_MODEL"}
    server_env.update(
        PYTHONPATH=str(env.site),
        TMPDIR=str(tmp),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    common = ["--listen-ip", HOST, "--listen-port", str(port), "--model-name", entry]
    predict = f"/v2/models/{entry}/predict/"
    if label in (before or {}):
        command = [*env.ours_command(), *common]
        server_env["PYTHONPATH"] = f"{(before or {})[label]}{os.pathsep}{env.site}"
    elif label == "ours":
        command = [*env.ours_command(), *common]
        if env.ours_source is not None:
            server_env["PYTHONPATH"] = f"{env.ours_source}{os.pathsep}{env.site}"
    elif label == "deepaas-2.6":
        command = [*env.deepaas_command(), *common]
    elif label == "litserve":
        assert litserve is not None
        command = [
            str(litserve),
            str(HERE / "_litserve_server.py"),
            "--port",
            str(port),
            "--model",
            entry,
        ]
        predict = "/predict"
    else:
        command = [
            str(env.ours_python),
            str(HERE / "_floor_server.py"),
            "--port",
            str(port),
            "--model",
            MODELS[entry],
        ]
        predict = "/predict/json"
    return Server(
        label=label,
        settings="defaults",
        command=command,
        env=server_env,
        port=port,
        ready_path=predict,
        predict_path=predict,
        log=env.work / "logs" / f"startup-{case}-{label}.log",
    )


class Poller:
    """Sends the case's request until a correct answer comes, counting misses."""

    def __init__(self, server: Server, body: bytes, ctype: str, case: str) -> None:
        self.server = server
        self.body = body
        self.headers = {"Content-Type": ctype, "Accept": "application/json"}
        self.check = CASES[case].check
        self.refused = 0
        self.non_2xx = 0
        self.other = 0  # resets, closed connections, wrong answers
        self.conn: http.client.HTTPConnection | None = None

    def once(self) -> bool:
        """One request; True when it was answered correctly."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.server.port, timeout=300)
        try:
            self.conn.request("POST", self.server.predict_path, self.body, self.headers)
            response = self.conn.getresponse()
            data = response.read()
        except ConnectionRefusedError:
            self.refused += 1
            self.close()
            return False
        except (OSError, http.client.HTTPException):
            self.other += 1
            self.close()
            return False
        if not 200 <= response.status < 300:
            self.non_2xx += 1
            return False
        try:
            answer = json.loads(data)
        except ValueError:
            self.other += 1
            return False
        if not (isinstance(answer, dict) and self.check(answer.get("predictions"))):
            self.other += 1
            return False
        return True

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def one_start(
    server: Server,
    case: str,
    body: bytes,
    ctype: str,
    args: argparse.Namespace,
    cwd: Path,
) -> dict[str, Any]:
    """Launch ``server``, time it to its first correct answer, measure, stop it."""
    poller = Poller(server, body, ctype, case)
    busy0 = machine_busy_seconds()
    own0 = sum(os.times()[:2])
    t0 = time.monotonic()
    server.start(cwd)
    assert server.process is not None
    try:
        deadline = t0 + args.timeout
        while not poller.once():
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"{server.label} exited with "
                    f"{server.process.returncode} while starting:\n"
                    f"{server.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{server.label}: no correct answer after "
                    f"{args.timeout:g} s:\n{server.log_tail()}"
                )
            time.sleep(args.poll_interval)
        first = time.monotonic() - t0
        cpu = tree_cpu_total(server.process.pid)
        other = machine_busy_seconds() - busy0 - cpu - (sum(os.times()[:2]) - own0)
        idle_rss = tree_memory_mb(server.process.pid)
        load_start = time.monotonic()
        for _ in range(args.requests):
            if not poller.once():
                raise RuntimeError(
                    f"{server.label}: a request after start-up failed "
                    f"(non-2xx {poller.non_2xx}, other {poller.other})"
                )
        load_s = time.monotonic() - load_start
        loaded_rss = tree_memory_mb(server.process.pid)
        loaded_pss = tree_memory_mb(server.process.pid, pss=True)
        processes = len(process_tree(server.process.pid))
    finally:
        poller.close()
        server.stop()
    return {
        "first_answer_s": first,
        "cpu_s": cpu,
        "other_cores": max(0.0, other / first),
        "refused": poller.refused,
        "non_2xx": poller.non_2xx,
        "other": poller.other,
        "idle_rss_mb": idle_rss,
        "loaded_rss_mb": loaded_rss,
        "loaded_pss_mb": loaded_pss,
        "processes": processes,
        "requests_per_s": args.requests / load_s if load_s else 0.0,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the starts of one (case, server); spread of the start time."""
    row: dict[str, Any] = {"n": len(runs)}
    for key, first in runs[0].items():
        if isinstance(first, str):  # the case and server: the same in each
            row[key] = first
        else:
            row[key] = statistics.median(r[key] for r in runs)
    times = [r["first_answer_s"] for r in runs]
    row["min_s"], row["max_s"] = min(times), max(times)
    row["other_cores_max"] = max(r["other_cores"] for r in runs)
    return row


def print_table(table: dict[str, dict[str, dict[str, Any]]]) -> None:
    for case, rows in table.items():
        floor = rows.get("floor")
        print(f"\n### {case}\n")
        print(
            "| server | first answer s (median) | min-max s | vs floor | CPU s | "
            "refused | non-2xx | idle RSS MB | after-load RSS MB | after-load "
            "PSS MB | RSS vs floor | processes | other CPU (max) |"
        )
        print(
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: | ---: | ---: |"
        )
        for label, row in rows.items():
            ratio = (
                f"{row['first_answer_s'] / floor['first_answer_s']:.2f}x"
                if floor
                else "-"
            )
            rss_ratio = (
                f"{row['loaded_rss_mb'] / floor['loaded_rss_mb']:.2f}x"
                if floor
                else "-"
            )
            print(
                f"| {label} | {row['first_answer_s']:.2f} | {row['min_s']:.2f}-"
                f"{row['max_s']:.2f} | {ratio} | {row['cpu_s']:.2f} | "
                f"{row['refused']:.0f} | {row['non_2xx']:.0f} | "
                f"{row['idle_rss_mb']:.0f} | {row['loaded_rss_mb']:.0f} | "
                f"{row['loaded_pss_mb']:.0f} | {rss_ratio} | "
                f"{row['processes']:.0f} | {row['other_cores_max']:.2f} |"
            )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Start-up time and memory of deepaas, DEEPaaS 2.6.0, LitServe "
        "and a bare aiohttp floor, on loopback."
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="measured starts per server and case (default 5)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="discarded starts per server and case first, so every "
        "server finds its files in the page cache (default 1)",
    )
    parser.add_argument(
        "--only",
        default=",".join(START_CASES),
        help=f"comma-separated cases (default {','.join(START_CASES)})",
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma-separated servers (default {','.join(SERVERS)})",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=200,
        help="predictions sent after the first, before the "
        "after-load memory is read (default 200)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.005,
        help="seconds between two tries while the server starts (default 0.005)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds a start may take before it counts as failed",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=HERE / ".work",
        help="venvs, logs and results (default benchmarks/.work)",
    )
    parser.add_argument(
        "--ours-source",
        type=Path,
        help="run deepaas from this source tree (the folder holding "
        "deepaas/), e.g. a git worktree of another branch",
    )
    parser.add_argument(
        "--before-source",
        type=Path,
        action="append",
        default=[],
        help="also start deepaas from this older source tree (the folder "
        "holding deepaas/, e.g. `git archive` of an older commit) as "
        "ours@<folder name>, interleaved with the others; repeat for several",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.requests < 0:
        parser.error("--repeats must be >= 1, --warmup and --requests >= 0")
    if args.poll_interval < 0:
        parser.error(f"--poll-interval must be >= 0 (got {args.poll_interval})")
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [c for c in args.only if c not in START_CASES]
    unknown += [s for s in args.servers if s not in SERVERS]
    if unknown or not args.only or not args.servers:
        parser.error(
            f"unknown or no case/server {unknown}; cases: "
            f"{', '.join(START_CASES)}; servers: {', '.join(SERVERS)}"
        )
    if args.ours_source is not None:
        args.ours_source = args.ours_source.resolve()
        if not (args.ours_source / "deepaas" / "__init__.py").is_file():
            parser.error(f"--ours-source {args.ours_source}: no deepaas/ there")
    args.before = {}
    for tree in args.before_source:
        tree = tree.resolve()
        if not (tree / "deepaas" / "__init__.py").is_file():
            parser.error(f"--before-source {tree}: no deepaas/ there")
        args.before[f"ours@{tree.name}"] = tree
    if args.before and "ours" in args.servers:
        at = args.servers.index("ours") + 1
        args.servers[at:at] = list(args.before)
    return args


def describe_machine(env: BenchEnv, args: argparse.Namespace) -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({cpu_name()}), Python {platform.python_version()}, "
        f"deepaas at {deepaas_revision(args.ours_source)}; "
        f"load average {load}; {args.repeats} starts per server, interleaved"
    )


def measure(
    env: BenchEnv, args: argparse.Namespace, litserve: Path | None
) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], list[str]]:
    """Start every server of ``args.servers`` on every case of ``args.only``.

    ``args.warmup`` discarded rounds, then ``args.repeats`` measured ones,
    the order of the servers rotating each round.  Returns the measured
    starts per (case, server) and one line per failed start.
    """
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    failures: list[str] = []
    bodies = {}
    for case in args.only:
        path, ctype = write_body(CASES[case], env.work)
        bodies[case] = (path.read_bytes(), ctype)
    for round_ in range(args.warmup + args.repeats):
        warm = round_ < args.warmup
        for case in args.only:
            shift = round_ % len(args.servers)
            for label in args.servers[shift:] + args.servers[:shift]:
                server = build(label, case, env, litserve, getattr(args, "before", {}))
                try:
                    result = one_start(server, case, *bodies[case], args, env.work)
                except RuntimeError as exc:
                    print(f"  FAILED: {case} {label}: {exc}", flush=True)
                    failures.append(f"{case} {label}: {str(exc).splitlines()[0]}")
                    continue
                print(
                    f"  {'warm-up' if warm else f'round {round_ - args.warmup}'} "
                    f"{case:>9} {label:>11}: {result['first_answer_s']:6.2f} s "
                    f"(CPU {result['cpu_s']:5.2f} s, refused {result['refused']}, "
                    f"non-2xx {result['non_2xx']}, other CPU "
                    f"{result['other_cores']:.2f}) RSS {result['idle_rss_mb']:.0f} "
                    f"-> {result['loaded_rss_mb']:.0f} MB",
                    flush=True,
                )
                if not warm:
                    result.update(case=case, server=label, round=round_ - args.warmup)
                    runs.setdefault((case, label), []).append(result)
                time.sleep(0.3)
    return runs, failures


def tabulate(
    runs: dict[tuple[str, str], list[dict[str, Any]]], args: argparse.Namespace
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per case, per server (in ``args.servers`` order): the medians."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for case in args.only:
        for label in args.servers:
            if (case, label) in runs:
                table.setdefault(case, {})[label] = summarize(runs[(case, label)])
    return table


def legend(requests: int) -> str:
    """What the columns of :func:`print_table` mean."""
    return (
        "first answer: seconds from launch to the first correct prediction, median "
        "(min-max); CPU s: CPU time of the process tree by then; refused / non-2xx: "
        "tries before it (median); RSS: process tree right after the first answer "
        f"(idle) and after {requests} more predictions; other CPU: cores used "
        "by other programs while it started (above ~0.2: disturbed)."
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work_dir.resolve()
    env = prepare(work, with_deepaas="deepaas-2.6" in args.servers)
    env.ours_source = args.ours_source
    litserve = None
    if "litserve" in args.servers:
        litserve = ensure_litserve_venv(work / LITSERVE_VENV, work / "setup.log")
    header = describe_machine(env, args)
    print(header, flush=True)
    started = time.monotonic()
    runs, failures = measure(env, args, litserve)
    table = tabulate(runs, args)
    elapsed = time.monotonic() - started
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\n## Start-up ({header}; {elapsed:.0f} s; load average at the end {load})")
    print(legend(args.requests))
    print_table(table)
    for failure in failures:
        print(f"- ERROR {failure}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.json or work / "results" / f"startup-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "header": header,
                "runs": [r for v in runs.values() for r in v],
                "table": table,
                "failures": failures,
            },
            indent=1,
        )
    )
    print(f"\nraw results: {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
