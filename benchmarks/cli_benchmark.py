"""One-shot ``deepaas-cli`` calls: deepaas against DEEPaaS 2.6.0.

A scientist's shell loop or a workflow step calls the model once per
process, so the whole process counts: interpreter, imports, loading the
model, the call, the exit.  Each round runs, interleaved, the same
command line with both tools, on the same benchmark model (``bench_echo``
or ``bench_small_mlp``, see ``deepaas_bench_models``); the figure is the
median wall time from launch to exit, and the ratio of the two.

    .venv/bin/python benchmarks/cli_benchmark.py [--repeats 7] [--only echo]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _bench_env import cpu_name, deepaas_revision, prepare

HERE = Path(__file__).resolve().parent

#: case -> (model, arguments of its predict call)
CASES = {
    "echo": ("bench_echo", ["--message", "hello, benchmark"]),
    "small_mlp": ("bench_small_mlp", ["--data", json.dumps([0.5] * 784)]),
}


def command(tool: Path, arguments: list[str]) -> list[str]:
    """The call, the model chosen as DEEPaaS 2.6.0 chooses it (DEEPAAS_V2_MODEL)."""
    return [str(tool), "predict", *arguments]


def one_call(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}"
        )
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=7, help="calls per tool and case"
    )
    parser.add_argument(
        "--only", default="echo,small_mlp", help="comma-separated cases"
    )
    parser.add_argument("--work-dir", type=Path, default=HERE / ".work")
    args = parser.parse_args(argv)
    env_info = prepare(args.work_dir.resolve(), with_deepaas=True)
    assert env_info.deepaas_venv is not None
    tools = {
        "deepaas": Path(sys.executable).parent / "deepaas-cli",
        "deepaas-2.6": env_info.deepaas_venv / "bin" / "deepaas-cli",
    }
    env = dict(os.environ)
    paths = [str(env_info.site)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    print(f"{os.cpu_count()} cores ({cpu_name()}), Python {sys.version.split()[0]}, "
          f"deepaas at {deepaas_revision(None)}; {args.repeats} calls per tool, "
          "interleaved", flush=True)
    print("\n| case | deepaas s (median) | DEEPaaS 2.6.0 s (median) "
          "| 2.6.0 / deepaas |")
    print("| --- | ---: | ---: | ---: |")
    for case in args.only.split(","):
        model, arguments = CASES[case]
        env["DEEPAAS_V2_MODEL"] = model
        times: dict[str, list[float]] = {label: [] for label in tools}
        for tool in tools.values():  # one discarded call each: page cache
            one_call(command(tool, arguments), env)
        for round_ in range(args.repeats):
            order = list(tools.items())
            if round_ % 2:
                order.reverse()
            for label, tool in order:
                times[label].append(one_call(command(tool, arguments), env))
        ours = statistics.median(times["deepaas"])
        old = statistics.median(times["deepaas-2.6"])
        print(f"| {case} | {ours:.2f} | {old:.2f} | {old / ours:.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
