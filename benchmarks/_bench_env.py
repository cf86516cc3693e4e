"""Preparing the benchmark's work dir: the model package and the virtualenvs.

* ``site/``: the benchmark models (``deepaas_bench_models``) plus a
  ``.dist-info`` that registers them under ``deepaas.v2.model``; every server
  gets it on ``PYTHONPATH``, so nothing is installed into a venv for them.
* ``venv-deepaas-2.6.0/``: the existing DEEPaaS 2.6.0 from PyPI and torch,
  created once and reused while its pins are unchanged.
* deepaas itself runs from the interpreter running this script (the
  project's venv); torch is installed there when missing.

torch is always pinned exactly: ``torch==2.13.0`` resolves to a CPU wheel,
an unpinned ``torch`` would pull gigabytes of CUDA libraries.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TORCH_PIN = "torch==2.13.0"
DEEPAAS_PIN = "deepaas==2.6.0"
LITSERVE_PIN = "litserve==0.2.19"
# What DEEPaaS 2.6.0 resolved to when this benchmark was written; they are
# tried first so runs stay comparable, and dropped if the index lacks them.
DEEPAAS_CONSTRAINTS = [
    "aiohttp==3.14.5",
    "aiohttp-apispec==2.2.3",
    "apispec==3.3.2",
    "marshmallow==3.26.2",
    "webargs==5.5.3",
    "oslo.config==8.8.1",
    "oslo.log==4.8.0",
    "stevedore==3.5.2",
    "Werkzeug==2.3.8",
]

MODELS = {
    "bench_echo": "deepaas_bench_models.echo",
    "bench_echo_inline": "deepaas_bench_models.echo_inline",
    "bench_small_mlp": "deepaas_bench_models.small_mlp",
    "bench_small_mlp_inline": "deepaas_bench_models.small_mlp_inline",
    "bench_small_mlp_batched": "deepaas_bench_models.small_mlp_batched",
    "bench_wide_mlp": "deepaas_bench_models.wide_mlp",
    "bench_wide_mlp_batched": "deepaas_bench_models.wide_mlp_batched",
    "bench_upload": "deepaas_bench_models.upload",
    # The GPU check's models (gpu_check.py).
    "bench_gpu_probe": "deepaas_bench_models.gpu_probe",
    "bench_gpu_faults": "deepaas_bench_models.gpu_faults",
    "bench_gpu_mlp": "deepaas_bench_models.gpu_mlp",
    "bench_gpu_mlp_batched": "deepaas_bench_models.gpu_mlp_batched",
}


@dataclasses.dataclass
class BenchEnv:
    """Where things are: the work dir, the interpreters, the model package."""

    work: Path
    site: Path
    ours_python: Path
    deepaas_venv: Path | None
    ours_source: Path | None = None

    def ours_command(self) -> list[str]:
        script = self.ours_python.parent / "deepaas-run"
        if script.exists():
            return [str(script)]
        return [str(self.ours_python), "-m", "deepaas.cmd.run"]

    def deepaas_command(self) -> list[str]:
        assert self.deepaas_venv is not None
        return [str(self.deepaas_venv / "bin" / "deepaas-run")]


def _run(cmd: list[str], log: Path, what: str) -> bool:
    print(f"  {what} (log: {log})", flush=True)
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
    return done.returncode == 0


def _torch_version(python: Path) -> str | None:
    done = subprocess.run(
        [str(python), "-c", "import torch; print(torch.__version__)"],
        capture_output=True, text=True, timeout=300,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_torch(python: Path, log: Path) -> str:
    """torch 2.13.0 (CPU) in the venv of ``python``; returns its version."""
    version = _torch_version(python)
    if version is None or not version.startswith(TORCH_PIN.split("==")[1]):
        ok = _run([str(python), "-m", "pip", "install", "-q", TORCH_PIN], log,
                  f"installing {TORCH_PIN} for {python}")
        version = _torch_version(python)
        if not ok or version is None:
            raise SystemExit(f"could not install {TORCH_PIN} for {python}; see {log}")
    return version


def write_model_package(site: Path) -> None:
    """Copy the models into ``site`` and register their entry points."""
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    shutil.copytree(HERE / "deepaas_bench_models", site / "deepaas_bench_models",
                    ignore=shutil.ignore_patterns("__pycache__"))
    info = site / "deepaas_bench_models-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: deepaas-bench-models\nVersion: 1.0\n"
    )
    entries = "".join(f"{name} = {module}\n" for name, module in MODELS.items())
    (info / "entry_points.txt").write_text(f"[deepaas.v2.model]\n{entries}")


def ensure_deepaas_venv(venv: Path, log: Path) -> None:
    """A venv with DEEPaaS 2.6.0 and torch, made once and reused."""
    marker = venv / ".bench-ready"
    wanted = "\n".join([DEEPAAS_PIN, TORCH_PIN, *DEEPAAS_CONSTRAINTS])
    if marker.exists() and marker.read_text() == wanted:
        return
    if venv.exists():
        shutil.rmtree(venv)
    print(f"preparing {venv} (first run only)", flush=True)
    if not _run([sys.executable, "-m", "venv", str(venv)], log, "creating the venv"):
        raise SystemExit(f"could not create {venv}; see {log}")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    constraints = venv / "constraints.txt"
    constraints.write_text("\n".join(DEEPAAS_CONSTRAINTS) + "\n")
    if not _run([*pip, "-c", str(constraints), DEEPAAS_PIN, TORCH_PIN], log,
                f"installing {DEEPAAS_PIN} and {TORCH_PIN} with pinned dependencies"):
        if not _run([*pip, DEEPAAS_PIN, TORCH_PIN], log,
                    "pins failed; installing with the newest compatible dependencies"):
            raise SystemExit(
                f"could not install {DEEPAAS_PIN}; see {log} (use --skip-deepaas "
                "when the package index is unreachable)"
            )
    ensure_torch(venv / "bin" / "python", log)
    marker.write_text(wanted)


def ensure_litserve_venv(venv: Path, log: Path) -> Path:
    """A venv with LitServe 0.2.19 and torch, made once and reused; its python."""
    marker = venv / ".bench-ready"
    wanted = "\n".join([LITSERVE_PIN, TORCH_PIN])
    python = venv / "bin" / "python"
    if marker.exists() and marker.read_text() == wanted:
        return python
    if venv.exists():
        shutil.rmtree(venv)
    print(f"preparing {venv} (first run only)", flush=True)
    if not _run([sys.executable, "-m", "venv", str(venv)], log, "creating the venv"):
        raise SystemExit(f"could not create {venv}; see {log}")
    if not _run([str(python), "-m", "pip", "install", "-q", LITSERVE_PIN, TORCH_PIN],
                log, f"installing {LITSERVE_PIN} and {TORCH_PIN}"):
        raise SystemExit(f"could not install {LITSERVE_PIN}; see {log} (leave "
                         "litserve out of --servers without a package index)")
    ensure_torch(python, log)
    marker.write_text(wanted)
    return python


def prepare(work: Path, *, with_deepaas: bool) -> BenchEnv:
    """Everything the servers need, under ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    log = work / "setup.log"
    ours = Path(sys.executable)
    ensure_torch(ours, log)
    site = work / "site"
    write_model_package(site)
    venv = work / "venv-deepaas-2.6.0" if with_deepaas else None
    if venv is not None:
        ensure_deepaas_venv(venv, log)
    return BenchEnv(work=work, site=site, ours_python=ours, deepaas_venv=venv)


def cpu_name() -> str:
    """The processor's model name, for the figures' heading."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def deepaas_revision(ours_source: Path | None) -> str:
    """Which deepaas was measured: ``abc1234``, ``+ uncommitted changes``, ``from DIR``.

    ``ours_source`` is the tree given with ``--ours-source`` (None: this one).
    """
    source = ours_source or HERE
    commit = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    package = "deepaas" if ours_source else "../deepaas"
    dirty = subprocess.run(
        ["git", "-C", str(source), "status", "--porcelain", "--", package],
        capture_output=True,
        text=True,
    ).stdout.strip()
    where = f" from {ours_source}" if ours_source else ""
    return f"{commit or '?'}{' + uncommitted changes' if dirty else ''}{where}"
