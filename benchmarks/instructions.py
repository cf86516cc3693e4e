"""Instructions the server executes per request, before and after a change.

Throughput on a small shared machine moves by 10-20% from run to run; the
number of instructions ``deepaas-run`` executes per request does not (runs
of one tree agree within about 0.5%).  This script counts them with
valgrind's callgrind, side by side, for:

* ``before``: the ``deepaas`` package of an earlier revision (``--before``,
  default aa2041b, the tree the hardening issue measured against), with
  its default options;
* ``ours``: this checkout, with its default options (metrics on, access
  log on but hidden by ``--log-level WARNING``);
* ``ours-bare``: this checkout with ``--metrics false --access-log false``.

Each server runs the in-process echo model (``--workers 0``, the cheapest
request, so that the framework's share is the largest), under
``valgrind --tool=callgrind --instr-atstart=no``.  A client sends 50
requests to warm it, counting is switched on, the client sends
``--requests`` more on one kept-alive connection (each request in one
``send``), counting is switched off and the total is divided by the
number of requests.  Only the server's own instructions are counted, not
the kernel's.  Two servers run at a time.

Usage::

    python benchmarks/instructions.py [--before REV | --before-source DIR]
        [--requests 1000] [--runs 2]

Needs valgrind (``callgrind_control`` too) and git for ``--before``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench_env import HERE, write_model_package
from _bench_servers import end_process, free_port

ROOT = HERE.parent
MODEL = "bench_echo_inline"
BODY = b'{"message": "hello, benchmark"}'  # serve_benchmark's echo body
#: The bound the hardening issue set: ours within 5% of before.
BOUND = 1.05


def request_bytes(port: int) -> bytes:
    head = (
        f"POST /v2/models/{MODEL}/predict/ HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    )
    return head.encode() + BODY


def drive(port: int, count: int) -> None:
    """``count`` requests one after the other on one connection; all 200."""
    request = request_bytes(port)
    with socket.create_connection(("127.0.0.1", port), timeout=120) as conn:
        buffer = b""
        for _ in range(count):
            conn.sendall(request)
            while True:
                head, sep, rest = buffer.partition(b"\r\n\r\n")
                if sep:
                    length = next(
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    )
                    if len(rest) >= length:
                        if not head.startswith(b"HTTP/1.1 200"):
                            raise RuntimeError(f"not answered 200: {head!r}")
                        buffer = rest[length:]
                        break
                chunk = conn.recv(65536)
                if not chunk:
                    raise RuntimeError("the server closed the connection")
                buffer += chunk


def wait_serving(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 300  # starting under valgrind is slow
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the server did not listen within 300 s; see {log}")


def count_once(label: str, source: Path, flags: list[str], site: Path,
               work: Path, requests: int) -> float:
    """Instructions per request of one server run."""
    port = free_port()
    out_dir = Path(tempfile.mkdtemp(prefix=f"cg-{label}-", dir=work))
    log = out_dir / "server.log"
    env = dict(os.environ, PYTHONHASHSEED="0",
               PYTHONPATH=os.pathsep.join([str(source), str(site)]))
    command = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no",
        f"--callgrind-out-file={out_dir}/callgrind.%p.out",
        sys.executable, "-m", "deepaas.cmd.run", "--model-name", MODEL,
        "--workers", "0", "--listen-ip", "127.0.0.1", "--listen-port", str(port),
        "--log-level", "WARNING", *flags,
    ]
    with open(log, "wb") as err:
        process = subprocess.Popen(command, stdout=err, stderr=subprocess.STDOUT,
                                   cwd=out_dir, env=env)
    try:
        wait_serving(port, process, log)
        drive(port, 50)
        control = ["callgrind_control"]
        subprocess.run([*control, "-i", "on", str(process.pid)], check=True,
                       capture_output=True)
        drive(port, requests)
        subprocess.run([*control, "-i", "off", str(process.pid)], check=True,
                       capture_output=True)
        subprocess.run([*control, "-d", str(process.pid)], check=True,
                       capture_output=True)
    finally:
        end_process(process, signal.SIGINT)
    total = 0
    for path in glob.glob(str(out_dir / "callgrind.*.out*")):
        with open(path) as dump:  # each dump ends with its "totals:" line
            total += max(
                (int(line.split()[1]) for line in dump if line.startswith("totals:")),
                default=0,
            )
    shutil.rmtree(out_dir, ignore_errors=True)
    if not total:
        raise RuntimeError(f"{label}: callgrind counted nothing")
    return total / requests


def export_revision(revision: str, into: Path) -> Path:
    """The ``deepaas`` package of ``revision``, exported with git archive."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "deepaas"],
                             check=True, capture_output=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="aa2041b",
                        help="git revision to compare with (default aa2041b)")
    parser.add_argument("--before-source", type=Path,
                        help="a source tree (with deepaas/) instead of --before")
    parser.add_argument("--requests", type=int, default=1000,
                        help="requests counted per run (default 1000)")
    parser.add_argument("--runs", type=int, default=2,
                        help="runs of each server; the median is reported (default 2)")
    parser.add_argument("--work-dir", type=Path, default=HERE / ".work")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"instructions.py: {tool} is not installed", file=sys.stderr)
            return 2
    work = args.work_dir.resolve()
    site = work / "site"
    write_model_package(site)
    scratch = Path(tempfile.mkdtemp(prefix="instructions-", dir=work))
    try:
        if args.before_source is not None:
            before, before_name = args.before_source.resolve(), str(args.before_source)
        else:
            before = export_revision(args.before, scratch / "before")
            before_name = args.before
        variants = [
            ("before", before, [], f"{before_name}, defaults"),
            ("ours", ROOT, [], "this checkout, defaults"),
            ("ours-bare", ROOT, ["--metrics", "false", "--access-log", "false"],
             "this checkout, --metrics false --access-log false"),
        ]
        jobs = [(v, run) for run in range(args.runs) for v in variants]
        counts: dict[str, list[float]] = {label: [] for label, *_ in variants}
        print(f"{len(jobs)} runs of {args.requests} echo requests under callgrind, "
              "two at a time (about a minute each) ...", flush=True)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = {
                pool.submit(count_once, label, source, flags, site, scratch,
                            args.requests): label
                for (label, source, flags, _), _run in jobs
            }
            for future in concurrent.futures.as_completed(futures):
                label = futures[future]
                counts[label].append(future.result())
                print(f"  {label}: {counts[label][-1]:,.0f}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    reference = statistics.median(counts["before"])
    print("\n| server | instructions per request (median) | runs | vs before |")
    print("| --- | ---: | --- | ---: |")
    for label, _, _, text in variants:
        median = statistics.median(counts[label])
        runs = ", ".join(f"{c:,.0f}" for c in counts[label])
        print(f"| {text} | {median:,.0f} | {runs} | {median / reference:.1%} |")
    ours = statistics.median(counts["ours"]) / reference
    verdict = "within" if ours <= BOUND else "NOT within"
    print(f"\nours with defaults: {ours:.1%} of before, {verdict} "
          f"{BOUND - 1:.0%} of it")
    return 0 if ours <= BOUND else 1


if __name__ == "__main__":
    sys.exit(main())
