"""Schemathesis over both API descriptions of a real deepaas-run.

Starts ``deepaas-run`` (the demo model by default) on a free loopback port
with a state directory of its own, runs schemathesis with every check over
``/openapi.json`` and ``/swagger.json`` (examples, coverage, fuzzing and
stateful phases), and prints what each run found.  It fails (exit 1) on
what the spec and the server must never show: a server error (ST101), an
undocumented status (ST103), an answer that breaks its schema (ST108),
an undocumented Content-Type (ST104) or header (ST105).

Two findings are expected and left alone:

* ST202 "schema-valid request rejected": a request the schema cannot rule
  out but the server rightly refuses (a PNG sent where the demo wants a
  CSV: 422; ``offset`` and ``tail`` together on a training log: 400).
* ST301 "deleted resource still available": ``DELETE .../train/<uuid>``
  cancels a training and the record stays readable with status
  ``cancelled``, as the DEEPaaS V2 contract and 2.x do.

schemathesis is not a dependency of deepaas: install it into a virtualenv
of its own and point ``--st`` at its ``st`` script::

    python3 -m venv /tmp/st && /tmp/st/bin/pip install schemathesis
    .venv/bin/python benchmarks/fuzz_spec.py --st /tmp/st/bin/st
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _bench_servers import end_process, free_port

#: Findings that fail the run (see the module docstring).
FORBIDDEN = {"ST101", "ST103", "ST104", "ST105", "ST108"}
_FINDING = re.compile(r"(ST\d{3}) ([^:]+): (\d+)")


def wait_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("fuzz_spec.py: deepaas-run exited before serving")
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("fuzz_spec.py: deepaas-run was not ready within 120 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--st", default=shutil.which("st") or "st",
                        help="schemathesis's st script (default: st on PATH)")
    parser.add_argument("--examples", type=int, default=30,
                        help="examples per operation and phase (default 30)")
    parser.add_argument("deepaas_args", nargs="*",
                        help="arguments for deepaas-run after --, e.g. -- "
                        "--model-name my-model (default: the demo model)")
    args = parser.parse_args(argv)
    if shutil.which(args.st) is None and not Path(args.st).is_file():
        print(f"fuzz_spec.py: no schemathesis at {args.st!r} (see --help)",
              file=sys.stderr)
        return 2
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="fuzz-spec-") as work:
        env = dict(os.environ, XDG_STATE_HOME=work,
                   DEEPAAS_DEMO_DIR=os.path.join(work, "demo"))
        with open(os.path.join(work, "server.log"), "wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "deepaas.cmd.run", "--listen-ip",
                 "127.0.0.1", "--listen-port", str(port), "--log-level",
                 "WARNING", *args.deepaas_args],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        failed = False
        try:
            wait_serving(url, server)
            for document in ("openapi.json", "swagger.json"):
                run = subprocess.run(
                    [args.st, "run", f"{url}/{document}", "--checks", "all",
                     "-n", str(args.examples)],
                    capture_output=True, text=True, timeout=1800,
                    cwd=work)  # its cache and reports stay out of the checkout
                summary = run.stdout.split("SUMMARY")[-1]
                found = _FINDING.findall(summary)
                cases = re.search(r"(\d+) generated", summary)
                print(f"{document}: {cases.group(1) if cases else '?'} test cases")
                if run.returncode not in (0, 1) or cases is None:
                    print(run.stdout[-3000:], run.stderr[-2000:], sep="\n")
                    failed = True
                for code, name, count in found:
                    verdict = "FAIL" if code in FORBIDDEN else "known"
                    failed |= code in FORBIDDEN
                    print(f"  {verdict:5s} {code} {name.strip()}: {count}")
                if not found:
                    print("  no findings")
        finally:
            end_process(server)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
