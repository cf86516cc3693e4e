"""The GPU path, proven in one run on a GPU machine (run by gpu_check.sh).

A GPU machine is lent for minutes, so everything it must show is checked in
one prepared run, each step with its own time limit, and the run leaves its
figures and logs in one folder.  The steps:

``tests``    the GPU tests (``pytest -m gpu tests/gpu``)
``serve``    a real ``deepaas-run`` with a torch model that asks for a GPU:
             each worker sees only its own device, the predictions run on it,
             ``/metrics`` shows the placement
``oom``      a call that runs out of GPU memory answers a clear error, its
             worker gives the memory back and goes on serving, the other
             model's workers are untouched
``fault``    a call whose kernel breaks the worker's CUDA context (a
             device-side assert) answers a clear error and its worker is
             replaced; no later call fails
``train``    a training that asks for a GPU, run to completion on it
``predict``  ``deepaas-predict --gpus`` over 1,000 input files
``bench``    the MLP on the GPU with and without ``predict_batch``:
             throughput, p99 and the GPU's utilisation (``nvidia-smi``)

Without a GPU it says so in one line and exits 3.  ``--rehearse`` runs every
step on the CPU instead (what can be checked without a GPU is checked, the
GPU-only checks are listed as not applicable), so that the run is proven
before a GPU machine's minutes are spent on it.

Exit status: 0 every check passed; 1 a check failed; 2 this Python lacks what
the run needs (named in one line); 3 no GPU (without ``--rehearse``).
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import contextlib
import dataclasses
import json
import os
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # the benchmarks' own modules

from _bench_env import write_model_package  # noqa: E402
from _bench_servers import HOST, Server, free_port  # noqa: E402

#: What runs the checks besides deepaas's own requirements (setup.cfg).
RUNNER_REQUIREMENTS = ["pytest>=8", "pytest-asyncio>=0.23", "pytest-aiohttp>=1.1"]

PROBE = "bench_gpu_probe"
FAULTS = "bench_gpu_faults"
MLP = "bench_gpu_mlp"
MLP_BATCHED = "bench_gpu_mlp_batched"
#: Prediction workers per GPU in the served check: more than one, so that
#: "each worker sees only its own device" is tested with neighbours.
WORKERS_PER_GPU = 2
#: Inputs of the deepaas-predict step.
PREDICT_INPUTS = 1000

EXIT_FAILED, EXIT_MISSING, EXIT_NO_GPU = 1, 2, 3

#: The calls that ran out of GPU memory, per model.
OOM_COUNTER = "deepaas_predict_out_of_gpu_memory_total"


# -- what this Python has ------------------------------------------------------


def required_packages() -> list[str]:
    """deepaas's install_requires (setup.cfg) and the test runner's needs."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    wanted = [line.split("#")[0].strip() for line in lines]
    return [line for line in wanted if line] + RUNNER_REQUIREMENTS


def missing_packages(requirements: list[str]) -> list[str]:
    """Each requirement this Python does not satisfy, as ``name (why)``."""
    from importlib import metadata

    try:
        from packaging.requirements import Requirement
    except ImportError:  # pytest needs it too
        return ["packaging (not installed; pytest needs it)"]

    missing = []
    for text in requirements:
        requirement = Requirement(text)
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(f"{requirement.name} (not installed)")
            continue
        if requirement.specifier and not requirement.specifier.contains(
            version, prereleases=True
        ):
            missing.append(
                f"{requirement.name} ({version}, needs {requirement.specifier})"
            )
    return missing


def torch_facts(env: dict[str, str]) -> dict[str, Any] | None:
    """torch's version and what it sees, asked in a child (this process stays
    free of CUDA); None when torch is not installed."""
    code = (
        "import json, torch; print(json.dumps({'version': torch.__version__, "
        "'cuda': torch.version.cuda, 'available': torch.cuda.is_available(), "
        "'count': torch.cuda.device_count()}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        return None
    facts: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return facts


def no_gpu_reason() -> str | None:
    """Why no GPU may be used here, as deepaas itself sees it; None: one may."""
    from deepaas.engine.devices import list_gpus, visible_gpus

    if shutil.which("nvidia-smi") is None:
        return "nvidia-smi is not installed"
    gpus = list_gpus()
    if not gpus:
        return "nvidia-smi lists no GPU"
    if not visible_gpus(gpus, os.environ):
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
        return f"CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU"
    return None


def gpu_table() -> list[dict[str, str]]:
    """The visible GPUs: their token (what workers get), index, uuid, name."""
    from deepaas.engine.devices import list_gpus, visible_gpus

    return [
        {"token": g.token, "index": str(g.index), "uuid": g.uuid, "name": g.name}
        for g in visible_gpus(list_gpus(), os.environ)
    ]


# -- the report ----------------------------------------------------------------


@dataclasses.dataclass
class Step:
    """One step's outcome: its checks, its figures and how long it took."""

    name: str
    checks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(c["ok"] is not False for c in self.checks)


class Report:
    """Prints as it goes, keeps every line in ``gpu_check.log`` and writes
    ``gpu_check.json`` at the end."""

    def __init__(self, out: Path, header: dict[str, Any]) -> None:
        self.out = out
        self.header = header
        self.steps: list[Step] = []
        self._log = open(out / "gpu_check.log", "a", buffering=1)  # noqa: SIM115

    def say(self, line: str = "") -> None:
        print(line, flush=True)
        self._log.write(line + "\n")

    def check(self, step: Step, what: str, ok: bool | None, detail: Any = "") -> None:
        """Record one check; ``ok`` None: not applicable (rehearsal on the CPU)."""
        step.checks.append({"check": what, "ok": ok, "detail": str(detail)})
        mark = {True: "ok  ", False: "FAIL", None: "n/a "}[ok]
        self.say(f"  {mark} {what}" + (f": {detail}" if detail != "" else ""))

    def write(self) -> None:
        record = {**self.header, "steps": [dataclasses.asdict(s) for s in self.steps]}
        for entry, step in zip(record["steps"], self.steps, strict=True):
            entry["ok"] = step.ok
        (self.out / "gpu_check.json").write_text(json.dumps(record, indent=2) + "\n")

    def close(self) -> None:
        self._log.close()


# -- servers and requests ----------------------------------------------------


def start_server(
    models: list[str],
    options: list[str],
    env: dict[str, str],
    log: Path,
    timeout: float,
) -> Server:
    """A real ``deepaas-run`` (``python -m deepaas.cmd.run``) serving
    ``models``, answering; in a session of its own, so that stopping it
    stops its workers too."""
    port = free_port()
    server = Server(
        label="deepaas-run",
        settings=" ".join(options),
        command=[
            sys.executable,
            "-m",
            "deepaas.cmd.run",
            "--listen-ip",
            HOST,
            "--listen-port",
            str(port),
            *[arg for model in models for arg in ("--model-name", model)],
            *options,
        ],
        env=env,
        port=port,
        ready_path="/v2/models/",
        predict_path="",
        log=log,
    )
    server.start(ROOT)
    try:
        server.wait_ready(timeout)
    except RuntimeError:
        server.stop(timeout=20)
        raise
    return server


def request(
    method: str, url: str, payload: Any = None, timeout: float = 120
) -> tuple[int, Any]:
    """``(status, JSON or text)`` of one request; JSON ``payload`` as its body."""
    data = None if payload is None else json.dumps(payload).encode()
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    call = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(call, timeout=timeout) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def predict_url(server: Server, model: str) -> str:
    return f"{server.base}/v2/models/{model}/predict/"


def predictions(answer: Any) -> Any:
    """The model's own answer inside a DEEPaaS V2 predict answer."""
    if isinstance(answer, dict) and "predictions" in answer:
        return answer["predictions"]
    return answer


async def concurrent_posts(url: str, payload: Any, count: int) -> list[tuple[int, Any]]:
    """``count`` JSON posts at once (to reach every worker)."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=180)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one() -> tuple[int, Any]:
            async with session.post(url, json=payload) as answer:
                return answer.status, await answer.json(content_type=None)

        return await asyncio.gather(*(one() for _ in range(count)))


def metric_samples(server: Server, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of metric ``name`` in ``/metrics`` (prometheus' own parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(server.base + "/metrics", timeout=30) as answer:
        text = answer.read().decode()
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


# -- nvidia-smi ------------------------------------------------------------------


def gpu_memory_used_mib() -> dict[str, int]:
    """Memory in use on each GPU (nvidia-smi index -> MiB), all processes."""
    done = subprocess.run(
        [
            "nvidia-smi",
            "--query-gpu=index,memory.used",
            "--format=csv,noheader,nounits",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    used = {}
    for line in done.stdout.splitlines():
        index, _, value = line.partition(",")
        with contextlib.suppress(ValueError):
            used[index.strip()] = int(float(value))
    return used


def gpu_processes() -> set[int]:
    """The pids nvidia-smi lists as computing on a GPU."""
    done = subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return {int(p) for p in re.findall(r"\d+", done.stdout)}


#: What the sampler asks nvidia-smi, one line per GPU.
SAMPLE_QUERY = "--query-gpu=timestamp,index,utilization.gpu,memory.used"


def parse_samples(text: str) -> list[tuple[float, float]]:
    """``(utilisation %, memory MiB)`` of each line of nvidia-smi's
    ``SAMPLE_QUERY`` answer (``--format=csv,noheader,nounits``); lines it
    could not measure (``[N/A]``) are left out."""
    samples = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        with contextlib.suppress(ValueError, IndexError):
            samples.append((float(fields[2]), float(fields[3])))
    return samples


class GpuSampler:
    """Samples the GPUs' utilisation and memory about every 200 ms while a
    measurement runs, into a CSV file too; a no-op without a GPU.

    Each sample is one short ``nvidia-smi`` call whose whole answer is read:
    its looping mode (``-lms``) buffers its output, which a stopped process
    may never write.
    """

    def __init__(self, csv: Path, label: str, enabled: bool) -> None:
        self.csv, self.label, self.enabled = csv, label, enabled
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if self.enabled:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _sample(self) -> None:
        with open(self.csv, "a") as out:
            out.write(f"# {self.label}\n")
            while not self._stop.is_set():
                began = time.monotonic()
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    answer = subprocess.run(
                        ["nvidia-smi", SAMPLE_QUERY, "--format=csv,noheader,nounits"],
                        capture_output=True,
                        text=True,
                        timeout=10,
                    ).stdout
                    out.write(answer)
                    self.samples += parse_samples(answer)
                self._stop.wait(max(0.0, 0.2 - (time.monotonic() - began)))

    def summary(self) -> dict[str, float]:
        """Mean and highest utilisation (%), highest memory (MiB) sampled."""
        if not self.samples:
            return {}
        util = [u for u, _ in self.samples]
        return {
            "gpu_util_mean": round(statistics.fmean(util), 1),
            "gpu_util_max": max(util),
            "gpu_mem_max_mib": max(m for _, m in self.samples),
            "samples": len(util),
        }


# -- the run -------------------------------------------------------------------


@dataclasses.dataclass
class Context:
    """What every step needs: where it is, what it may expect, its servers."""

    args: argparse.Namespace
    out: Path
    work: Path
    env: dict[str, str]
    gpus: list[dict[str, str]]
    report: Report
    deadline: float
    served: Server | None = None
    probe_pids: set[int] = dataclasses.field(default_factory=set)

    @property
    def on_gpu(self) -> bool:
        return bool(self.gpus)

    @property
    def device(self) -> str:
        """What a placed worker computes on."""
        return "cuda:0" if self.on_gpu else "cpu"

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def gpu_only(self, step: Step, what: str, ok: bool, detail: Any = "") -> None:
        """A check that only a GPU can answer: n/a in a rehearsal."""
        self.report.check(
            step,
            what,
            ok if self.on_gpu else None,
            detail if self.on_gpu else "rehearsal on the CPU",
        )

    def served_server(self) -> Server:
        """The server of the serve, oom and train steps, started once."""
        if self.served is None:
            self.served = start_server(
                [PROBE, FAULTS],
                [
                    "--workers-per-gpu",
                    str(WORKERS_PER_GPU),
                    "--workers",
                    str(WORKERS_PER_GPU),
                    "--state-dir",
                    str(self.work / "state"),
                    "--predict-timeout",
                    "120",
                ],
                self.env,
                self.out / "serve.log",
                timeout=min(180, max(30, self.left())),
            )
        return self.served


def step_tests(ctx: Context, step: Step) -> None:
    """the GPU tests"""
    log = ctx.out / "pytest.log"
    # Only the plugins the suite uses: a GPU image holds others (xdist,
    # benchmark, timeout...) made for another pytest than the one carried.
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "pytest_asyncio.plugin",
        "-p",
        "pytest_aiohttp.plugin",
        "-p",
        "no:cacheprovider",
        "-m",
        "gpu",
        "tests/gpu",
        "-v",
    ]
    env = {**ctx.env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    with open(log, "w") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=max(30, ctx.left()),
        )
    text = log.read_text(errors="replace")
    summary = (re.findall(r"^=+ (.+) in [\d.]+s", text, re.M) or ["(no summary)"])[-1]
    counts = {
        k: int(n)
        for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)
    }
    step.figures.update(counts, exit_status=done.returncode)
    ctx.report.check(
        step,
        "pytest -m gpu tests/gpu ends without a failure",
        done.returncode == 0 and not counts.get("failed"),
        summary,
    )
    if ctx.on_gpu:
        ctx.report.check(
            step,
            "every GPU test ran (none skipped)",
            counts.get("passed", 0) > 0 and not counts.get("skipped"),
            summary,
        )
    else:
        reasons = re.findall(r"SKIPPED \[\d+\] [^:]+:\d+: (.+)", text)
        ctx.report.check(
            step,
            "GPU tests skipped with their reason",
            None,
            "; ".join(sorted(set(reasons))) or summary,
        )


def step_serve(ctx: Context, step: Step) -> None:
    """deepaas-run with a model that asks for a GPU"""
    started = time.perf_counter()
    server = ctx.served_server()
    step.figures["startup_s"] = round(time.perf_counter() - started, 2)
    # A model that trains keeps its last GPU for trainings when it has two or
    # more (docs/gpus.md, "Trainings"); its predictions use the others.
    predict_gpus = ctx.gpus[:-1] if len(ctx.gpus) > 1 else ctx.gpus
    expected_workers = WORKERS_PER_GPU * max(1, len(predict_gpus))
    placement = [
        line
        for line in server.log.read_text(errors="replace").splitlines()
        if f"model {PROBE!r}:" in line and "worker(s)" in line
    ]
    if ctx.on_gpu:
        ctx.report.check(
            step,
            "start-up names the GPUs of the workers",
            bool(placement) and "GPU" in placement[0],
            placement[0].split("INFO")[-1].strip()
            if placement
            else "no placement line",
        )
    # Enough concurrent, slow calls to reach every worker.
    answers: list[tuple[int, Any]] = []
    for _ in range(3):
        answers += asyncio.run(
            concurrent_posts(
                predict_url(server, PROBE),
                {"size": 1024, "hold_ms": 300},
                4 * expected_workers,
            )
        )
        if (
            len({predictions(a).get("pid") for s, a in answers if s == 200})
            >= expected_workers
        ):
            break
    failed = [a for s, a in answers if s != 200]
    ctx.report.check(
        step, f"{len(answers)} predictions answered 200", not failed, failed[:1] or ""
    )
    workers: dict[int, dict[str, Any]] = {}
    for status, answer in answers:
        if status == 200:
            seen = predictions(answer)
            workers[seen["pid"]] = seen
    ctx.probe_pids = set(workers)
    ctx.report.check(
        step,
        f"{expected_workers} workers answered",
        len(workers) == expected_workers,
        sorted(workers),
    )
    tokens = {g["token"] for g in predict_gpus}
    uuid_of = {g["token"]: g["uuid"] for g in ctx.gpus}
    for pid, seen in sorted(workers.items()):
        visible = seen["cuda_visible_devices"]
        where = (
            f"CUDA_VISIBLE_DEVICES={visible!r}, {seen['device_count']} device(s)"
            f", current {seen.get('current_device')}, tensors on "
            f"{seen['tensor_device']}, {seen.get('device_name', 'no GPU')}"
        )
        if ctx.on_gpu:
            ok = (
                visible in tokens
                and seen["device_count"] == 1
                and seen.get("current_device") == 0
                and seen["tensor_device"] == "cuda:0"
                and seen["deepaas_device"] == "cuda:0"
                and same_uuid(seen.get("device_uuid", ""), uuid_of.get(visible, ""))
            )
        else:
            ok = (
                seen["tensor_device"] == "cpu"
                and seen["deepaas_device"] == "cpu"
                and seen["device_count"] == 0
            )
        ctx.report.check(step, f"worker {pid} sees only its own device", ok, where)
    if ctx.on_gpu:
        used = {seen["cuda_visible_devices"] for seen in workers.values()}
        ctx.report.check(
            step, "the workers cover every visible GPU", used == tokens, sorted(used)
        )
        listed = gpu_processes()
        ctx.report.check(
            step,
            "nvidia-smi lists the workers as GPU processes",
            # None: nvidia-smi names none of them (it may count the pids of
            # another pid namespace than ours): not a verdict either way.
            ctx.probe_pids <= listed if listed & ctx.probe_pids else None,
            f"workers {sorted(ctx.probe_pids)}, nvidia-smi "
            f"{sorted(listed) or 'lists no pid (in a container)'}",
        )
    assigned = {
        (labels["gpu"], labels["role"]): value
        for labels, value in metric_samples(server, "deepaas_gpu_assigned")
        if labels.get("model") == PROBE
    }
    step.figures["gpu_assigned"] = {f"{g}/{r}": v for (g, r), v in assigned.items()}
    wanted = {(t, "predict"): float(WORKERS_PER_GPU) for t in tokens}
    shown = {k: v for k, v in assigned.items() if k[1] == "predict"}
    ctx.gpu_only(
        step,
        "/metrics shows the workers' GPUs (deepaas_gpu_assigned)",
        shown == wanted,
        step.figures["gpu_assigned"],
    )
    if not ctx.on_gpu:
        ctx.report.check(
            step,
            "/metrics shows no GPU on the CPU",
            not assigned,
            step.figures["gpu_assigned"] or "no GPU sample",
        )


def same_uuid(torch_uuid: str, smi_uuid: str) -> bool:
    """Whether torch's and nvidia-smi's UUIDs name one device: torch writes
    it without nvidia-smi's ``GPU-`` prefix (and may group it otherwise), so
    only the hexadecimal digits are compared."""

    def digits(text: str) -> str:
        return re.sub(r"[^0-9a-f]", "", text.lower().removeprefix("gpu-"))

    return len(digits(torch_uuid)) >= 16 and digits(torch_uuid) == digits(smi_uuid)


def step_oom(ctx: Context, step: Step) -> None:
    """a call that runs out of GPU memory"""
    server = ctx.served_server()
    url = predict_url(server, FAULTS)
    restarts_before = _restarts(server)
    oom_before = _per_model(server, OOM_COUNTER).get(FAULTS, 0)
    reach = {"mode": "small", "hold_ms": 300}
    calls = 4 * WORKERS_PER_GPU * max(1, len(ctx.gpus))
    answers = asyncio.run(concurrent_posts(url, reach, calls))
    before = _pids(answers)
    ctx.report.check(
        step,
        f"ordinary calls answer 200 ({calls} calls)",
        all(st == 200 for st, _ in answers),
        f"workers {sorted(before)}",
    )
    used_before = gpu_memory_used_mib() if ctx.on_gpu else {}
    started = time.perf_counter()
    status, answer = request("POST", url, {"mode": "fill", "chunk_mib": 1024})
    step.figures["oom_call_s"] = round(time.perf_counter() - started, 2)
    failed_call(ctx, step, status, answer, "out of GPU memory", "ran out of memory")
    if ctx.on_gpu:
        time.sleep(1)  # the worker gives the memory back after answering
        used_after = gpu_memory_used_mib()
        step.figures["gpu_used_mib_before"] = used_before
        step.figures["gpu_used_mib_after"] = used_after
        grew = max(
            (used_after.get(k, 0) - v for k, v in used_before.items()), default=0
        )
        ctx.report.check(
            step,
            "the GPU's memory is given back (nvidia-smi)",
            grew < 2048,
            f"before {used_before} MiB, after {used_after} MiB",
        )
    answers = asyncio.run(concurrent_posts(url, reach, calls))
    after = _pids(answers)
    ctx.report.check(
        step,
        "its workers answer again, the same ones (recovered, not restarted)",
        all(st == 200 for st, _ in answers) and after == before,
        f"workers {sorted(after)}",
    )
    if ctx.on_gpu:
        reserved = [predictions(a).get("reserved_mib", 1 << 30) for _, a in answers]
        step.figures["reserved_mib_after"] = max(reserved, default=None)
        ctx.report.check(
            step,
            "no worker holds cached GPU memory of the failed call",
            bool(reserved) and max(reserved) < 1024,
            f"torch reserved at most {max(reserved, default=0)} MiB",
        )
    answers = asyncio.run(
        concurrent_posts(
            predict_url(server, PROBE),
            {"size": 256, "hold_ms": 100},
            4 * len(ctx.probe_pids or {0}),
        )
    )
    pids = _pids(answers)
    ctx.report.check(
        step,
        "the other model's workers are untouched",
        all(st == 200 for st, _ in answers) and pids <= ctx.probe_pids and bool(pids),
        f"answered by {sorted(pids)}, before {sorted(ctx.probe_pids)}",
    )
    counted = _per_model(server, OOM_COUNTER).get(FAULTS, 0) - oom_before
    # The rehearsal's failure is the CPU allocator's: no GPU memory, no count.
    ctx.report.check(
        step,
        f"/metrics counts it ({OOM_COUNTER})",
        counted == (1 if ctx.on_gpu else 0),
        f"+{counted:g}",
    )
    restarts_after = _restarts(server)
    ctx.report.check(
        step,
        "no worker restarted (deepaas_worker_restarts)",
        restarts_after == restarts_before,
        restarts_after or "none",
    )


def failed_call(
    ctx: Context, step: Step, status: int, answer: Any, prefix: str, what: str
) -> None:
    """Check the answer of a call whose GPU work failed: a 500 with a JSON
    message, which on a GPU starts with deepaas's ``prefix``."""
    message = answer.get("message", "") if isinstance(answer, dict) else str(answer)
    ctx.report.check(
        step,
        f"the call that {what} answers 500 with JSON",
        status == 500 and bool(message),
        f"{status}: {message[:300]}",
    )
    ctx.gpu_only(
        step,
        f"its message starts with {prefix!r}",
        message.startswith(prefix + ":"),
        message[:160],
    )


def _restarts(server: Server) -> dict[str, float]:
    return _per_model(server, "deepaas_worker_restarts_total")


def _per_model(server: Server, name: str) -> dict[str, float]:
    """Metric ``name`` summed per model (over its other labels)."""
    totals: dict[str, float] = {}
    for labels, value in metric_samples(server, name):
        model = labels.get("model", "?")
        totals[model] = totals.get(model, 0) + value
    return totals


def step_fault(ctx: Context, step: Step) -> None:
    """a call that breaks its worker's CUDA context"""
    server = ctx.served_server()
    url = predict_url(server, FAULTS)
    reach = {"mode": "small", "hold_ms": 300}
    calls = 4 * WORKERS_PER_GPU * max(1, len(ctx.gpus))
    before = _pids(asyncio.run(concurrent_posts(url, reach, calls)))
    restarts_before = _restarts(server).get(FAULTS, 0)
    status, answer = request("POST", url, {"mode": "assert"})
    failed_call(ctx, step, status, answer, "the GPU failed", "failed")
    # The worker leaves after answering; its replacement warms first.
    expected = 1 if ctx.on_gpu else 0
    waited = time.monotonic() + 120
    restarts = _restarts(server).get(FAULTS, 0) - restarts_before
    while restarts < expected and time.monotonic() < waited:
        time.sleep(0.5)
        restarts = _restarts(server).get(FAULTS, 0) - restarts_before
    causes = {
        labels.get("cause"): value
        for labels, value in metric_samples(server, "deepaas_worker_restarts_total")
        if labels.get("model") == FAULTS and value
    }
    ctx.report.check(
        step,
        f"its worker is {'replaced' if ctx.on_gpu else 'kept (a CPU IndexError)'}"
        " (deepaas_worker_restarts)",
        restarts == expected and set(causes) <= {"gpu_failed"},
        f"+{restarts:g}, causes {causes or 'none'}",
    )
    answers = asyncio.run(concurrent_posts(url, reach, calls))
    after = _pids(answers)
    failed = [a for st, a in answers if st != 200]
    ctx.report.check(
        step, f"no later call fails ({calls} calls)", not failed, failed[:1] or ""
    )
    ctx.report.check(
        step,
        f"{len(before - after)} worker(s) replaced",
        len(before - after) == expected and len(after) == len(before),
        f"before {sorted(before)}, after {sorted(after)}",
    )
    probe = _pids(
        asyncio.run(
            concurrent_posts(
                predict_url(server, PROBE),
                {"size": 256, "hold_ms": 100},
                4 * len(ctx.probe_pids or {0}),
            )
        )
    )
    ctx.report.check(
        step,
        "the other model's workers are untouched",
        bool(probe) and probe <= ctx.probe_pids,
        f"answered by {sorted(probe)}",
    )


def _pids(answers: list[tuple[int, Any]]) -> set[int]:
    return {predictions(a).get("pid") for st, a in answers if st == 200}


def step_train(ctx: Context, step: Step) -> None:
    """a training that asks for a GPU"""
    server = ctx.served_server()
    steps = 100 if ctx.args.quick else 500
    status, answer = request(
        "POST", f"{server.base}/v2/models/{PROBE}/train/", {"steps": steps}
    )
    ctx.report.check(
        step,
        "the training is accepted",
        status in (200, 201),
        f"{status} {answer.get('status') if isinstance(answer, dict) else answer}",
    )
    if status not in (200, 201):
        return
    uuid = answer["uuid"]
    started = time.perf_counter()
    while answer.get("status") in ("queued", "running") and ctx.left() > 5:
        time.sleep(0.5)
        status, answer = request("GET", f"{server.base}/v2/models/{PROBE}/train/{uuid}")
    step.figures["wall_s"] = round(time.perf_counter() - started, 2)
    ctx.report.check(
        step,
        "it runs to completion",
        answer.get("status") == "done",
        answer.get("status"),
    )
    output = (answer.get("result") or {}).get("output") or {}
    if not output:
        ctx.report.check(step, "it returns its result", False, answer.get("message"))
        return
    step.figures.update(
        steps=output["steps"],
        train_s=output["seconds"],
        steps_per_s=round(output["steps"] / max(output["seconds"], 1e-9), 1),
        loss_first=round(output["loss_first"], 4),
        loss_last=round(output["loss_last"], 6),
    )
    ctx.report.check(
        step,
        f"its parameters live on {ctx.device}",
        output["parameters_device"] == ctx.device
        and output["deepaas_device"] == ctx.device,
        f"{output['parameters_device']}, CUDA_VISIBLE_DEVICES="
        f"{output['cuda_visible_devices']!r}, "
        f"{output.get('device_name', 'no GPU')}",
    )
    if ctx.on_gpu:
        ctx.report.check(
            step,
            "it sees one GPU among the visible ones",
            output["device_count"] == 1
            and output["cuda_visible_devices"] in {g["token"] for g in ctx.gpus},
            output["cuda_visible_devices"],
        )
    ctx.report.check(
        step,
        "it learned (loss fell)",
        output["loss_last"] < output["loss_first"] / 2,
        f"{output['loss_first']:.4f} -> {output['loss_last']:.6f} in "
        f"{output['steps']} steps, {step.figures['steps_per_s']} steps/s",
    )


def step_predict(ctx: Context, step: Step) -> None:
    """deepaas-predict --gpus over 1,000 input files"""
    inputs = ctx.work / "inputs"
    shutil.rmtree(inputs, ignore_errors=True)
    inputs.mkdir(parents=True)
    rng = random.Random(0)
    expected = {}
    for number in range(PREDICT_INPUTS):
        data = rng.randbytes(4096)
        path = inputs / f"input-{number:04d}.bin"
        path.write_bytes(data)
        expected[str(path)] = sum(data)
    results = ctx.work / "predicted"
    shutil.rmtree(results, ignore_errors=True)
    gpus = ",".join(str(i) for i in range(len(ctx.gpus))) if ctx.on_gpu else "auto"
    command = [
        sys.executable,
        "-m",
        "deepaas.cmd.predict",
        str(inputs),
        "-o",
        str(results),
        "--model-name",
        PROBE,
        "--gpus",
        gpus,
        "--arg",
        "size=64",
        "--progress-interval",
        "5",
    ]
    if not ctx.on_gpu:
        command += ["--workers", "2"]
    started = time.perf_counter()
    with open(ctx.out / "predict.log", "a") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=ctx.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=max(30, ctx.left()),
        )
    wall = time.perf_counter() - started
    step.figures.update(
        wall_s=round(wall, 2),
        inputs_per_s=round(PREDICT_INPUTS / wall, 1),
        exit_status=done.returncode,
    )
    ctx.report.check(
        step,
        f"deepaas-predict --gpus {gpus} exits 0",
        done.returncode == 0,
        f"exit {done.returncode}",
    )
    records = []
    results_file = results / "results.jsonl"
    if results_file.exists():
        records = [json.loads(line) for line in results_file.read_text().splitlines()]
    ok = [r for r in records if r.get("status") == "ok"]
    ctx.report.check(
        step,
        f"{PREDICT_INPUTS} inputs, each with an ok record",
        len(ok) == PREDICT_INPUTS and len(records) == PREDICT_INPUTS,
        f"{len(ok)} ok of {len(records)} records, "
        f"{step.figures['inputs_per_s']} inputs/s",
    )
    answers = [predictions(r.get("output")) for r in ok]
    right = sum(
        1
        for r, a in zip(ok, answers, strict=True)
        if a.get("checksum") == expected.get(r["input"])
    )
    ctx.report.check(
        step,
        "each answer is the sum of its input's bytes",
        right == PREDICT_INPUTS,
        f"{right} of {PREDICT_INPUTS}",
    )
    devices = {a.get("checksum_device") for a in answers}
    ctx.report.check(
        step,
        f"every input was computed on {ctx.device}",
        devices == {ctx.device},
        sorted(map(str, devices)),
    )
    pids = {a.get("pid") for a in answers}
    step.figures["workers"] = len(pids)
    if ctx.on_gpu:
        seen = {a.get("cuda_visible_devices") for a in answers}
        ctx.report.check(
            step,
            "its workers see one GPU each, among those asked for",
            seen <= {g["token"] for g in ctx.gpus}
            and all(a.get("device_count") == 1 for a in answers),
            f"{len(pids)} worker(s), CUDA_VISIBLE_DEVICES {sorted(seen)}",
        )


def step_bench(ctx: Context, step: Step) -> None:
    """the MLP with and without predict_batch"""
    from _loadgen import drive  # aiohttp: imported once the packages are checked

    server = start_server(
        [MLP, MLP_BATCHED],
        [
            "--workers-per-gpu",
            "1",
            "--workers",
            "1",
            "--train-endpoint",
            "false",
            "--access-log",
            "false",
        ],
        ctx.env,
        ctx.out / "bench.log",
        timeout=min(180, max(30, ctx.left())),
    )
    body = json.dumps({"data": [0.5] * 784}).encode()
    levels = [16] if ctx.args.quick else [1, 64]
    seconds = 2.0 if ctx.args.quick else 8.0
    table: dict[str, dict[int, dict[str, Any]]] = {}
    try:
        for model in (MLP, MLP_BATCHED):
            url = predict_url(server, model)
            asyncio.run(drive(url, body, "application/json", 8, 1.0))  # warm-up
            for level in levels:
                label = f"{model} concurrency {level}"
                with GpuSampler(ctx.out / "gpu_samples.csv", label, ctx.on_gpu) as gpu:
                    cell = asyncio.run(
                        drive(url, body, "application/json", level, seconds)
                    )
                rate = cell["requests"] / cell["duration_s"]
                row = {
                    "req_per_s": round(rate, 1),
                    "p50_ms": round(cell["p50_ms"], 2),
                    "p99_ms": round(cell["p99_ms"], 2),
                    "errors": cell["errors"],
                    **gpu.summary(),
                }
                table.setdefault(model, {})[level] = row
                ctx.report.check(
                    step, f"{label}: no errors", cell["errors"] == 0, _row_text(row)
                )
    finally:
        server.stop(timeout=20)
    step.figures["cells"] = {
        m: {str(k): v for k, v in r.items()} for m, r in table.items()
    }
    for level in levels:
        plain = table.get(MLP, {}).get(level, {}).get("req_per_s")
        batched = table.get(MLP_BATCHED, {}).get(level, {}).get("req_per_s")
        if plain and batched:
            step.figures[f"batched_over_plain_c{level}"] = round(batched / plain, 2)
            ctx.report.say(
                f"  ---- concurrency {level}: predict_batch / predict = "
                f"{batched / plain:.2f}x throughput"
            )


def _row_text(row: dict[str, Any]) -> str:
    text = f"{row['req_per_s']} req/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms"
    if "gpu_util_mean" in row:
        text += (
            f", GPU {row['gpu_util_mean']}% mean / {row['gpu_util_max']:g}% max"
            f", {row['gpu_mem_max_mib']:g} MiB"
        )
    return text


STEPS: dict[str, Callable[[Context, Step], None]] = {
    "tests": step_tests,
    "serve": step_serve,
    "oom": step_oom,
    "fault": step_fault,
    "train": step_train,
    "predict": step_predict,
    "bench": step_bench,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gpu_check",
        description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 all passed, 1 a check failed, 2 missing "
        "packages, 3 no GPU.",
    )
    parser.add_argument(
        "--rehearse",
        action="store_true",
        help="without a GPU, run every step on the CPU",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="shorter measurements and training (the suite's rehearsal)",
    )
    parser.add_argument(
        "--steps",
        default=",".join(STEPS),
        help=f"steps to run, in this order (default {','.join(STEPS)})",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=420,
        help="seconds for the whole run; a step not started "
        "in time is reported as not run (default 420)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("OUT") or HERE / ".work" / "gpu_check"),
        help="folder of the log, the JSON figures and the servers' "
        "logs (default $OUT, else benchmarks/.work/gpu_check)",
    )
    args = parser.parse_args(argv)
    args.steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in args.steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; known: {', '.join(STEPS)}")
    return args


def child_environment(site: Path) -> dict[str, str]:
    """Every child finds deepaas (this tree) and the check's models (``site``)."""
    env = dict(os.environ)
    paths = [str(site), str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(":"))]
    env["PYTHONPATH"] = ":".join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_packages(required_packages())
    if missing:
        print(
            f"gpu_check: this Python ({sys.executable}) lacks {', '.join(missing)}; "
            "carry them as wheels (python benchmarks/gpu_wheels.py, docs/gpus.md)"
        )
        return EXIT_MISSING
    sys.path.insert(0, str(ROOT))
    reason = no_gpu_reason()
    if reason and not args.rehearse:
        print(
            f"gpu_check: no GPU here ({reason}); nothing was checked "
            "(--rehearse runs the steps on the CPU)"
        )
        return EXIT_NO_GPU
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="deepaas-gpu-check-"))
    site = work / "site"
    write_model_package(site)
    env = child_environment(site)
    facts = torch_facts(env)
    if facts is None:
        print(f"gpu_check: torch is not installed for {sys.executable}")
        shutil.rmtree(work, ignore_errors=True)
        return EXIT_MISSING
    if not reason and not (facts["cuda"] and facts["available"]):
        print(
            f"gpu_check: no GPU usable by torch {facts['version']} "
            f"({'a CPU-only build' if not facts['cuda'] else 'it sees no GPU'})"
        )
        shutil.rmtree(work, ignore_errors=True)
        return EXIT_MISSING if not facts["cuda"] else EXIT_NO_GPU
    gpus = [] if reason else gpu_table()
    header = {
        "mode": "rehearsal on the CPU" if reason else "GPU",
        "no_gpu_reason": reason,
        "gpus": gpus,
        "torch": facts,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "deepaas": _revision(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "argv": sys.argv[1:] if argv is None else argv,
        "work": str(work),
    }
    report = Report(args.out, header)
    report.say(
        f"deepaas GPU check ({header['mode']}), deepaas {header['deepaas']}, "
        f"Python {header['python']}, torch {facts['version']} "
        f"(CUDA {facts['cuda']})"
    )
    for gpu in gpus:
        report.say(f"GPU {gpu['index']}: {gpu['name']} {gpu['uuid']}")
    if reason:
        report.say(
            f"REHEARSAL: {reason}; every step runs on the CPU, "
            "GPU-only checks are n/a. This proves the run, not the GPU."
        )
    ctx = Context(
        args, args.out, work, env, gpus, report, deadline=time.monotonic() + args.budget
    )
    began = time.perf_counter()
    try:
        for name in args.steps:
            step = Step(name)
            report.steps.append(step)
            report.say(f"[{name}] {STEPS[name].__doc__ or ''}".rstrip())
            if ctx.left() < 10:
                step.error = "not run: the run's time budget was spent"
                report.say(f"  FAIL {step.error}")
                continue
            started = time.perf_counter()
            try:
                STEPS[name](ctx, step)
            except Exception as exc:  # a step's breakage fails it, not the run
                step.error = f"{type(exc).__name__}: {exc}"
                report.say(f"  FAIL the step broke: {step.error}")
                report._log.write(traceback.format_exc())
            step.seconds = round(time.perf_counter() - started, 2)
            report.say(f"  ({step.seconds} s)")
    finally:
        if ctx.served is not None:
            ctx.served.stop(timeout=20)
        shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - began
    header["seconds"] = round(total, 1)
    failed = [s.name for s in report.steps if not s.ok]
    report.say("")
    report.say(
        f"{'FAILED: ' + ', '.join(failed) if failed else 'all checks passed'}"
        f" ({header['mode']}, {total:.0f} s; figures in "
        f"{args.out / 'gpu_check.json'})"
    )
    report.write()
    report.close()
    return EXIT_FAILED if failed else 0


def _revision() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() or "(no git)"


if __name__ == "__main__":
    sys.exit(main())
