"""Where deepaas-run's start-up time goes, phase by phase, without touching it.

Starts ``deepaas-run`` with its default options (one worker process) on the
echo and small MLP benchmark models, ``--repeats`` times each, and times the
phases from outside:

* ``_startup_trace/sitecustomize.py`` (first on ``PYTHONPATH``) makes every
  Python process of the server's tree (the API process, the probe that
  describes the model, the worker) log when it was created, when its
  interpreter was up, when ``deepaas.cmd.run``, the model module and torch
  started and finished importing, and the model's ``warm()``;
* a thread reads the children of the API process from ``/proc`` every few
  milliseconds (when the probe is really gone, after its interpreter's
  clean-up);
* the server's stdout is read line by line (when it announces its address);
* the predict endpoint is polled with a correct request from the launch on,
  as in ``startup_benchmark.py`` (the first correct answer).

Then ``python -X importtime`` says which packages ``deepaas.cmd.run`` and the
model pull in, and what each costs.  Prints one table of medians per model.

    .venv/bin/python benchmarks/startup_breakdown.py --repeats 5   # ~1 min

See docs/benchmarks.md, section "Start-up".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench_env import MODELS, prepare  # noqa: E402
from _bench_servers import HOST, Server, free_port  # noqa: E402
from serve_benchmark import CASES, write_body  # noqa: E402
from startup_benchmark import START_CASES, Poller  # noqa: E402

TRACE_DIR = HERE / "_startup_trace"


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class ChildWatcher(threading.Thread):
    """When each child of ``pid`` was first and last seen (CLOCK_BOOTTIME)."""

    def __init__(self, pid: int, interval: float = 0.003) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.seen: dict[int, list[float]] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            now = boottime()
            try:
                tasks = os.listdir(f"/proc/{self.pid}/task")
            except OSError:
                return
            for task in tasks:
                try:
                    with open(f"/proc/{self.pid}/task/{task}/children") as handle:
                        pids = handle.read().split()
                except OSError:
                    continue
                for child in pids:
                    self.seen.setdefault(int(child), [now, now])[1] = now
            time.sleep(self.interval)


class LineStamper(threading.Thread):
    """Reads a pipe line by line and notes when each line arrived."""

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: list[tuple[float, str]] = []

    def run(self) -> None:
        for raw in iter(self.stream.readline, b""):
            self.lines.append((boottime(), raw.decode(errors="replace")))


def traced_start(
    case: str, env: Any, body: bytes, ctype: str, args: argparse.Namespace, index: int
) -> dict[str, Any]:
    """One traced start of deepaas-run; the events and marks it left."""
    entry = START_CASES[case]
    module = MODELS[entry]
    trace = env.work / "trace" / f"{case}-{index}.jsonl"
    trace.parent.mkdir(parents=True, exist_ok=True)
    trace.unlink(missing_ok=True)
    port = free_port()
    server_env = {k: v for k, v in os.environ.items() if k != "DEEPAAS_V2_MODEL"}
    server_env.update(
        PYTHONPATH=os.pathsep.join(
            [
                str(TRACE_DIR),
                *([str(env.ours_source)] if env.ours_source else []),
                str(env.site),
            ]
        ),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        STARTUP_TRACE=str(trace),
        STARTUP_TRACE_MODULES=f"deepaas.cmd.run,torch,{module}",
        STARTUP_TRACE_WARM=module,
    )
    predict = f"/v2/models/{entry}/predict/"
    command = [
        *env.ours_command(),
        "--listen-ip",
        HOST,
        "--listen-port",
        str(port),
        "--model-name",
        entry,
    ]
    server = Server(
        label="ours",
        settings="defaults",
        command=command,
        env=server_env,
        port=port,
        ready_path=predict,
        predict_path=predict,
        log=env.work / "logs" / "breakdown.log",
    )
    poller = Poller(server, body, ctype, case)
    launch = boottime()
    process = subprocess.Popen(
        command,
        env=server_env,
        cwd=env.work,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    server.process = process  # stopped (the whole group) by server.stop()
    watcher = ChildWatcher(process.pid)
    stamper = LineStamper(process.stdout)
    watcher.start()
    stamper.start()
    try:
        while not poller.once():
            if process.poll() is not None:
                raise RuntimeError(f"deepaas-run exited with {process.returncode}")
            if boottime() - launch > args.timeout:
                raise RuntimeError(f"no correct answer after {args.timeout:g} s")
            time.sleep(0.005)
        first = boottime()
    finally:
        poller.close()
        watcher.stopping.set()
        server.stop()
    stamper.join(5)
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    announced = next(
        (t for t, line in stamper.lines if "deepaas: serving" in line), None
    )
    return {
        "launch": launch,
        "first": first,
        "api": process.pid,
        "events": events,
        "children": watcher.seen,
        "announced": announced,
    }


def phases(start: dict[str, Any]) -> dict[str, float]:
    """Seconds per phase of one traced start (absent phases left out)."""
    api = start["api"]
    by_pid: dict[int, dict[str, Any]] = {}
    for event in start["events"]:
        proc = by_pid.setdefault(event["pid"], {"name": "", "ppid": event["ppid"]})
        if event["process"].startswith("deepaas-"):
            proc["name"] = event["process"]
        key = event["event"]
        if "module" in event:
            key += ":" + event["module"]
        if key == "created":
            proc[key] = event["at"]
        else:
            proc.setdefault(key, event["t"])

    def find(prefix: str) -> dict[str, Any]:
        for proc in by_pid.values():
            if proc["name"].startswith(prefix):
                return proc
        return {}

    main, probe, worker = (
        by_pid.get(api, {}),
        find("deepaas-probe-"),
        find("deepaas-worker-"),
    )
    model = next(
        (
            m
            for m in MODELS.values()
            if any(f"import-start:{m}" in p for p in by_pid.values())
        ),
        "",
    )
    gone = start["children"].get(
        next((pid for pid, p in by_pid.items() if p is probe), -1), [None, None]
    )[1]
    marks = [
        ("API process: interpreter up", start["launch"], main.get("site")),
        (
            "API process: imports (deepaas.cmd.run)",
            main.get("site"),
            main.get("import-end:deepaas.cmd.run"),
        ),
        (
            "API process: options, logging, bind, find the model",
            main.get("import-end:deepaas.cmd.run"),
            probe.get("created"),
        ),
        ("probe: interpreter up", probe.get("created"), probe.get("site")),
        (
            "probe: spawn set-up and deepaas imports",
            probe.get("site"),
            probe.get(f"import-start:{model}"),
        ),
        (
            "probe: model import",
            probe.get(f"import-start:{model}"),
            probe.get(f"import-end:{model}"),
        ),
        (
            "probe: model import, of which torch",
            probe.get("import-start:torch"),
            probe.get("import-end:torch"),
        ),
        (
            "probe: describe, report, exit handlers",
            probe.get(f"import-end:{model}"),
            probe.get("exit"),
        ),
        ("probe: interpreter clean-up until reaped", probe.get("exit"), gone),
        ("API process: plan, executors, app", gone, worker.get("created")),
        ("worker: interpreter up", worker.get("created"), worker.get("site")),
        (
            "worker: spawn set-up and deepaas imports",
            worker.get("site"),
            worker.get(f"import-start:{model}"),
        ),
        (
            "worker: model import",
            worker.get(f"import-start:{model}"),
            worker.get(f"import-end:{model}"),
        ),
        (
            "worker: model import, of which torch",
            worker.get("import-start:torch"),
            worker.get("import-end:torch"),
        ),
        (
            "worker: warm()",
            worker.get(f"warm-start:{model}"),
            worker.get(f"warm-end:{model}"),
        ),
        (
            "worker ready -> address announced",
            worker.get(f"warm-end:{model}") or worker.get(f"import-end:{model}"),
            start["announced"],
        ),
        ("announced -> first correct answer", start["announced"], start["first"]),
    ]
    out = {}
    for name, begin, end in marks:
        if begin is not None and end is not None:
            out[name] = end - begin
    out["total: launch -> first correct answer"] = start["first"] - start["launch"]
    return out


def importtime(
    python: Path, module: str, pythonpath: str, runs: int
) -> list[tuple[str, float]]:
    """Seconds spent importing each top-level package (sum of its modules' own
    times, ``-X importtime``) when ``module`` is imported; medians, largest first."""
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        done = subprocess.run(
            [str(python), "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": pythonpath},
        )
        if done.returncode != 0:
            raise RuntimeError(f"importing {module} failed:\n{done.stderr[-2000:]}")
        totals: dict[str, float] = {}
        for line in done.stderr.splitlines():
            if not line.startswith("import time:") or "|" not in line:
                continue
            parts = line.split("|")
            try:
                own = int(parts[0].split(":")[1])
            except ValueError:
                continue  # the header line
            top = parts[2].strip().split(".")[0]
            totals[top] = totals.get(top, 0.0) + own / 1e6
        for top, seconds in totals.items():
            samples.setdefault(top, []).append(seconds)
    rows = [(top, statistics.median(v)) for top, v in samples.items()]
    return sorted(rows, key=lambda r: -r[1])


def process_seconds(python: Path, code: str, pythonpath: str, runs: int) -> float:
    """Median wall time of ``python -c code``, launch to exit."""
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        subprocess.run(
            [str(python), "-c", code],
            check=True,
            env={**os.environ, "PYTHONPATH": pythonpath},
        )
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=5, help="traced starts per model (default 5)"
    )
    parser.add_argument(
        "--only",
        default=",".join(START_CASES),
        help=f"comma-separated cases (default {','.join(START_CASES)})",
    )
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--work-dir", type=Path, default=HERE / ".work")
    parser.add_argument(
        "--ours-source",
        type=Path,
        help="run deepaas from this source tree (the folder holding deepaas/), "
        "e.g. a git worktree of another branch, to compare its phases",
    )
    args = parser.parse_args(argv)
    if args.ours_source is not None:
        args.ours_source = args.ours_source.resolve()
        if not (args.ours_source / "deepaas" / "__init__.py").is_file():
            parser.error(f"--ours-source {args.ours_source}: no deepaas/ there")
    cases = [c.strip() for c in args.only.split(",") if c.strip()]
    if args.repeats < 1 or not cases or any(c not in START_CASES for c in cases):
        parser.error(f"--repeats >= 1; --only among {', '.join(START_CASES)}")
    env = prepare(args.work_dir.resolve(), with_deepaas=False)
    env.ours_source = args.ours_source
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"{os.cpu_count()} cores, load average {load}", flush=True)
    table: dict[str, dict[str, list[float]]] = {}
    for index in range(args.repeats + 1):  # the first start is a discarded warm-up
        for case in cases:
            path, ctype = write_body(CASES[case], env.work)
            start = traced_start(case, env, path.read_bytes(), ctype, args, index)
            got = phases(start)
            total = got["total: launch -> first correct answer"]
            print(
                f"  {'warm-up' if index == 0 else f'start {index}'} {case}: "
                f"{total:.2f} s",
                flush=True,
            )
            if index:
                for name, seconds in got.items():
                    table.setdefault(case, {}).setdefault(name, []).append(seconds)
    print("\n## Where deepaas-run's start-up goes (medians, seconds)\n")
    print(f"| phase | {' | '.join(cases)} |")
    print(f"| --- |{' ---: |' * len(cases)}")
    names = list(dict.fromkeys(n for c in cases for n in table[c]))
    for name in names:
        cells = [
            f"{statistics.median(table[c][name]):.3f}" if name in table[c] else "-"
            for c in cases
        ]
        print(f"| {name} | {' | '.join(cells)} |")
    path = os.pathsep.join(str(p) for p in (env.ours_source, env.site) if p)
    print()
    # What a child process costs with everything a spawned child of
    # deepaas-run imports now, and with only what a worker or probe runs.
    for what, code in (
        ("bare interpreter", "pass"),
        ("engine only",
         "import deepaas.engine.process_pool._worker_main, deepaas.engine.probe"),
        ("deepaas-run's module", "import deepaas.cmd.run"),
        ("aiohttp.web", "import aiohttp.web"),
    ):
        seconds = process_seconds(env.ours_python, code, path, 5)
        print(f"python -c {code!r} ({what}): {seconds:.3f} s, launch to exit")
    for module in ("deepaas.cmd.run", MODELS["bench_small_mlp"]):
        rows = importtime(env.ours_python, module, path, 3)
        total = sum(s for _, s in rows)
        shown = ", ".join(f"{top} {s:.3f}" for top, s in rows[:8])
        print(f"import {module}: {total:.3f} s (-X importtime, median of 3): {shown}")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average at the end: {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
