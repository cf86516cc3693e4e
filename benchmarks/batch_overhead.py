"""How much deepaas-predict costs per input, next to a plain Python loop.

    .venv/bin/python benchmarks/batch_overhead.py [--inputs 3000]

The model (``ClipFeatures`` below) is deliberately small: it reads a
one-second 16 kHz mono clip (16,000 int16 samples, 32 KB of raw PCM) and
computes a short-time spectrum (512-sample frames, hop 256, Hann window)
to answer the clip's RMS level, zero-crossing rate and five strongest
frequencies.  That is about a millisecond of numpy work: far less than a
real classifier, so the framework's own per-input cost shows plainly.

Side by side, in one run, over the same files (read once beforehand, so
every contender reads them from the page cache):

* **plain loop**: ``predict(data=UploadedFile(...))`` called in a Python
  loop in this process, results kept in a list: the floor.  It hands the
  model the input file itself; deepaas-predict hands it a copy of its own
  (the contract lets a model delete or truncate its file), made and removed
  by the batch process, so that cost is part of every deepaas-predict
  figure.  The copy alone is measured too (last line): a reflink where the
  filesystem of ``$TMPDIR`` and the inputs allows it, else a byte copy.
* **deepaas-predict** ``--workers 0`` (the model in the batch process),
  ``--workers 1`` and ``--workers 2`` (worker processes), each a real
  subprocess writing its results file; when ``taskset`` exists,
  ``--workers 1`` once more pinned to a single CPU, as in a one-CPU SLURM
  task where the batch process and its worker share the core.

Every contender runs with the same fixed glibc malloc settings
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``; ``mallopt`` in this
process).  Without them, glibc's dynamic mmap threshold makes the model's
own speed depend on the heap's history: numpy's ~250 KB temporaries are
then mmapped and page-faulted afresh on each call in some processes and not
in others, which moved the plain loop alone between 0.4 and 1.1 ms per
input from one process to the next.  ``--no-malloc-pin`` shows that.

Three figures per contender:

* **steady/s**: inputs per second from the results' ``finished`` timestamps
  (first to last record): the per-input speed the target is about;
* **end-to-end/s**: inputs over the wall time of the whole command
  (start-up, spawning and warming workers included, which a short run does
  not amortize);
* **CPU ms/input**: CPU time of every process of the run (batch process and
  workers), less that of a 20-input run (the fixed start-up cost), per
  input.  Wall-clock rates need a quiet machine; CPU time barely moves when
  other work shares the CPUs, so it shows the overhead even then.  With a
  CPU to spare, ``--workers 1`` runs as fast as its worker, which does less
  per input than the single process of ``--workers 0``: so
  ``plain CPU / workers=0 CPU`` is a lower bound of ``--workers 1``'s speed
  relative to the loop.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RATE = 16000


class ClipFeatures:
    """The benchmark model: spectral features of a raw 16-bit PCM clip."""

    def get_metadata(self) -> dict[str, Any]:
        return {"name": "clip-features", "description": "benchmark model"}

    def get_predict_args(self) -> dict[str, Any]:
        from marshmallow import fields

        return {
            "data": fields.Field(
                required=True,
                metadata={
                    "type": "file",
                    "location": "form",
                    "description": "raw int16 mono PCM at 16 kHz",
                },
            ),
            "top": fields.Int(load_default=5),
        }

    def predict(self, data: Any, top: int = 5) -> dict[str, Any]:
        samples = np.fromfile(data.filename, dtype="<i2").astype(np.float32) / 32768
        frame, hop = 512, 256
        count = 1 + (len(samples) - frame) // hop
        index = np.arange(frame)[None, :] + hop * np.arange(count)[:, None]
        frames = samples[index] * np.hanning(frame).astype(np.float32)
        power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)
        freqs = np.fft.rfftfreq(frame, 1 / RATE)
        strongest = np.argsort(power)[::-1][:top]
        return {
            "rms": float(np.sqrt(np.mean(samples**2))),
            "zcr": float(np.mean(np.abs(np.diff(np.signbit(samples).astype(np.int8))))),
            "peaks_hz": [float(freqs[i]) for i in strongest],
        }


MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(8 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(128 << 20),
}


def pin_malloc_here() -> None:
    """The same settings as MALLOC_ENV, for this (already running) process."""
    import ctypes

    libc = ctypes.CDLL(None)
    libc.mallopt(-3, 8 << 20)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD


def make_inputs(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(RATE) / RATE
    paths = []
    for i in range(count):
        tone = np.sin(2 * np.pi * (200 + 7 * i % 3000) * t)
        noise = rng.normal(0, 0.1, RATE)
        clip = ((tone * 0.5 + noise) * 20000).clip(-32768, 32767).astype("<i2")
        path = folder / f"clip_{i:05d}.pcm"
        clip.tofile(path)
        paths.append(path)
    return paths


def register(site: Path) -> None:
    dist = site / "batch_overhead_bench-0.0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: batch_overhead_bench\nVersion: 0.0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[deepaas.v2.model]\nclip-features = batch_overhead:ClipFeatures\n"
    )


def plain_loop(paths: list[Path]) -> tuple[float, float]:
    """Wall and CPU seconds of the loop."""
    from deepaas.model.files import UploadedFile

    model = ClipFeatures()
    results = []
    start, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        upload = UploadedFile("data", str(path), "application/octet-stream", path.name)
        results.append(model.predict(data=upload))
    return time.perf_counter() - start, time.process_time() - cpu


def plain_child(folder: Path) -> None:
    """The plain loop as its own process (``--plain-loop DIR``): prints JSON."""
    paths = sorted(folder.iterdir())
    wall, cpu = plain_loop(paths)
    print(json.dumps({"count": len(paths), "wall": wall, "cpu": cpu}))


def run_plain(work: Path, folder: Path, pin: bool = False) -> dict[str, Any]:
    command = [sys.executable, __file__, "--plain-loop", str(folder)]
    if pin:
        command = ["taskset", "-c", "0", *command]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT)])
    start, cpu = time.perf_counter(), children_cpu()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu
    loop = json.loads(proc.stdout)
    return {
        "name": "plain loop",
        "count": loop["count"],
        "wall": wall,
        "cpu": cpu,
        "steady_rate": loop["count"] / loop["wall"],
        "wall_rate": loop["count"] / wall,
    }


def same_process(work: Path, paths: list[Path], rounds: int) -> dict[str, float]:
    """The loop and the batch engine (``--workers 0``) in this one process.

    Same interpreter, same heap, alternating: the difference is deepaas's own
    per-input work (argument handling, answer encoding, records) and nothing
    else.
    """
    import importlib
    import logging

    from deepaas.batch import BatchOptions, BatchRun, collect_files
    from deepaas.model.loading import ModelSpec

    sys.path.insert(0, str(HERE))
    importlib.invalidate_caches()
    spec = ModelSpec("clip-features", "batch_overhead:ClipFeatures", None)
    best = {"loop_wall": 1e9, "loop_cpu": 1e9, "batch_wall": 1e9, "batch_cpu": 1e9}
    for number in range(rounds):
        wall, cpu = plain_loop(paths)
        best["loop_wall"] = min(best["loop_wall"], wall)
        best["loop_cpu"] = min(best["loop_cpu"], cpu)
        out = work / f"out-same-{number}"
        options = BatchOptions(
            output_dir=out,
            model=spec,
            workers=0,
            progress_interval=0,
            log_level=logging.WARNING,
        )
        run = BatchRun(options, collect_files([str(work / "clips")]))
        logging.getLogger("deepaas").setLevel(logging.WARNING)
        start, cpu = time.perf_counter(), time.process_time()
        run.run()
        best["batch_wall"] = min(best["batch_wall"], time.perf_counter() - start)
        best["batch_cpu"] = min(best["batch_cpu"], time.process_time() - cpu)
    return best


def copy_cost(paths: list[Path], rounds: int) -> tuple[float, float, bool]:
    """Wall and CPU seconds per input of the copy deepaas-predict makes (and
    removes) for the model, and whether reflinks work here."""
    from deepaas.model.files import can_reflink, copy_for_model

    scratch = tempfile.mkdtemp(prefix="deepaas-bench-")
    wall = cpu = 1e9
    try:
        for number in range(rounds):
            start, began = time.perf_counter(), time.process_time()
            reflink = can_reflink(str(paths[0]), scratch)
            for index, path in enumerate(paths):
                copied = copy_for_model(
                    str(path), scratch, f"{number}-{index}", reflink=reflink
                )
                os.unlink(copied)
            wall = min(wall, (time.perf_counter() - start) / len(paths))
            cpu = min(cpu, (time.process_time() - began) / len(paths))
        return wall, cpu, can_reflink(str(paths[0]), scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def steady_seconds(results: Path) -> tuple[int, float]:
    stamps = []
    with open(results) as handle:
        for line in handle:
            record = json.loads(line)
            if record["status"] == "ok":
                stamps.append(datetime.datetime.fromisoformat(record["finished"]))
    stamps.sort()
    return len(stamps), (stamps[-1] - stamps[0]).total_seconds()


def run_predict(
    work: Path, name: str, inputs: Path, workers: int, pin: bool = False
) -> dict[str, Any]:
    out = work / f"out-{name}"
    shutil.rmtree(out, ignore_errors=True)
    command = [
        str(Path(sys.executable).parent / "deepaas-predict"),
        str(inputs),
        "--model-name",
        "clip-features",
        "--output-dir",
        str(out),
        "--workers",
        str(workers),
        "--log-level",
        "WARNING",
    ]
    if pin:
        command = ["taskset", "-c", "0", *command]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(work / "site"), str(HERE), str(ROOT)])
    start, cpu = time.perf_counter(), children_cpu()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{proc.stderr}")
    count, steady = steady_seconds(out / "results.jsonl")
    return {
        "name": name,
        "count": count,
        "wall": wall,
        "cpu": cpu,
        "steady_rate": (count - 1) / steady,
        "wall_rate": count / wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=3000)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds over every contender; the best of each is kept",
    )
    parser.add_argument("--plain-loop", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-malloc-pin",
        action="store_true",
        help="leave glibc malloc's dynamic thresholds alone",
    )
    args = parser.parse_args()
    if not args.no_malloc_pin and not args.plain_loop:
        os.environ.update(MALLOC_ENV)  # inherited by every contender
        pin_malloc_here()
    if args.plain_loop:
        plain_child(args.plain_loop)
        return 0
    base = HERE / ".work"
    base.mkdir(exist_ok=True)
    small = 20
    load_before = os.getloadavg()[0]
    contenders = [
        ("plain loop", -1, False),
        ("workers=0", 0, False),
        ("workers=1", 1, False),
        ("workers=2", 2, False),
    ]
    if shutil.which("taskset"):
        contenders += [
            ("plain loop, one CPU", -1, True),
            ("workers=1, one CPU", 1, True),
        ]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in contenders}
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        work = Path(tmp)
        register(work / "site")
        paths = make_inputs(work / "clips", args.inputs)
        few = work / "few"
        few.mkdir()
        for path in paths[:small]:
            shutil.copy(path, few / path.name)
        for path in paths:  # into the page cache for every contender
            path.read_bytes()
        # Rounds, each contender once per round: noise from other work on the
        # machine spreads over all of them instead of hitting one.
        for _ in range(args.repeat):
            for name, workers, pin in contenders:
                tag = name.replace(" ", "").replace(",", "-")
                if workers < 0:
                    full = run_plain(work, work / "clips", pin)
                    short = run_plain(work, few, pin)
                else:
                    full = run_predict(work, tag, work / "clips", workers, pin)
                    short = run_predict(work, tag + "-few", few, workers, pin)
                full["cpu_ms"] = (
                    1e3 * (full["cpu"] - short["cpu"]) / (args.inputs - small)
                )
                runs[name].append(full)
        same = same_process(work, paths, args.repeat)
        copy_wall, copy_cpu, reflinks = copy_cost(paths, args.repeat)
    rows = []
    for name, _, _ in contenders:
        best = dict(max(runs[name], key=lambda r: r["steady_rate"]))
        best["name"] = name
        best["wall_rate"] = max(r["wall_rate"] for r in runs[name])
        best["cpu_ms"] = min(r["cpu_ms"] for r in runs[name])
        rows.append(best)
    print(
        f"{args.inputs} inputs, model ClipFeatures, {os.cpu_count()} CPUs, "
        f"best of {args.repeat} rounds; load average before: {load_before:.2f}, "
        f"after: {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'contender':<21}{'steady/s':>9}{'vs loop':>8}{'end-to-end/s':>13}"
        f"{'vs loop':>8}{'CPU ms/input':>13}{'loop/this':>10}"
    )
    for row in rows:
        loop = (
            rows[0]
            if "one CPU" not in row["name"]
            else next(r for r in rows if r["name"] == "plain loop, one CPU")
        )
        print(
            f"{row['name']:<21}{row['steady_rate']:>9.0f}"
            f"{row['steady_rate'] / loop['steady_rate']:>8.0%}"
            f"{row['wall_rate']:>13.0f}{row['wall_rate'] / loop['wall_rate']:>8.0%}"
            f"{row['cpu_ms']:>13.3f}{loop['cpu_ms'] / row['cpu_ms']:>10.0%}"
        )
    count = args.inputs
    print(
        f"same process, alternating (deepaas's own per-input work only): loop "
        f"{1e3 * same['loop_cpu'] / count:.3f} ms CPU, "
        f"{count / same['loop_wall']:.0f}/s; "
        f"workers=0 engine {1e3 * same['batch_cpu'] / count:.3f} ms CPU, "
        f"{count / same['batch_wall']:.0f}/s: "
        f"{same['loop_cpu'] / same['batch_cpu']:.0%} of the loop's speed in CPU time, "
        f"{same['loop_wall'] / same['batch_wall']:.0%} in wall time"
    )
    print(
        f"the copy each input gets (made and removed by the batch process, in "
        f"{tempfile.gettempdir()}): {1e3 * copy_wall:.3f} ms per input, "
        f"{1e3 * copy_cpu:.3f} ms CPU; "
        + ("reflinks" if reflinks else "byte copies (no reflinks on this filesystem)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
