"""Shared fixtures: fake models registered under real entry points."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from deepaas.model.loading import MODEL_NAMESPACE, ModelSpec

if TYPE_CHECKING:
    from tests.servers import RunningServer

ROOT = Path(__file__).resolve().parent.parent

#: name -> entry-point value of every fake model in tests/fake_models.
FAKE_MODELS = {
    "old-style": "tests.fake_models.old_style",
    "new-style": "tests.fake_models.new_style:Model",
    "echo": "tests.fake_models.misc:echo",
    "failing": "tests.fake_models.misc:Failing",
    "images": "tests.fake_models.misc:Images",
    "predict-only": "tests.fake_models.misc:PredictOnly",
    "crashing": "tests.fake_models.engine:Crashy",
    "broken": "tests.fake_models.broken",
    "crashy": "tests.fake_models.engine:Crashy",
    "slow-warm": "tests.fake_models.engine:SlowWarm",
    "warm-fails": "tests.fake_models.engine:WarmFails",
    "batched": "tests.fake_models.engine:Batched",
    "thread-echo": "tests.fake_models.engine:ThreadEcho",
    "async-echo": "tests.fake_models.engine:AsyncEcho",
    "async-sleeper": "tests.fake_models.engine:AsyncSleeper",
    "needs-gpu": "tests.fake_models.engine:NeedsGpu",
    "prefers-gpu": "tests.fake_models.engine:PrefersGpu",
    "two-gpus": "tests.fake_models.engine:TwoGpus",
    "metadata-gpu": "tests.fake_models.engine:MetadataGpu",
    "cpu-only": "tests.fake_models.engine:CpuOnly",
    "bad-resources": "tests.fake_models.engine:BadResources",
    "fails-on-restart": "tests.fake_models.engine:FailsOnRestart",
    "upload-raises": "tests.fake_models.extra:UploadRaises",
    "no-predict": "tests.fake_models.extra:NoPredict",
    "metadata-links": "tests.fake_models.extra:MetadataLinks",
    "dict-schema": "tests.fake_models.extra:DictSchema",
    "bad-init": "tests.fake_models.extra:BadInit",
    "types": "tests.fake_models.extra:Types",
    "async": "tests.fake_models.extra:AsyncModel",
    "chatty": "tests.fake_models.extra:Chatty",
    "trainer": "tests.fake_models.trainers:Trainer",
    "slurm-gpu-trainer": "tests.fake_models.slurm_trainers:GpuTrainer",
    "slurm-greedy-trainer": "tests.fake_models.slurm_trainers:GreedyTrainer",
    "unserializable": "tests.fake_models.trainers:Unserializable",
    "printer": "tests.fake_models.trainers:Printer",
    "batch-reader": "tests.fake_models.batch:Reader",
    "batch-two-files": "tests.fake_models.batch:TwoFiles",
    "batch-gpu": "tests.fake_models.batch:GpuReader",
    "batch-gpu-preferred": "tests.fake_models.batch:GpuPreferringReader",
    "batch-two-gpus": "tests.fake_models.batch:TwoGpuReader",
    "batch-divide": "tests.fake_models.batch:Divide",
    "header-trainer": "tests.fake_models.compat_api:HeaderTrainer",
    "image-range": "tests.fake_models.compat_api:ImageRange",
    "refuser": "tests.fake_models.compat_api:Refuser",
    "lists": "tests.fake_models.compat_api:Lists",
    "batch-harmful": "tests.fake_models.batch:Harmful",
    "batch-harmful-pair": "tests.fake_models.batch:HarmfulPair",
    "batch-segfault": "tests.fake_models.batch:Segfaulting",
    "batch-copies": "tests.fake_models.batch:CopyWatcher",
    "deepaas-test": "tests.fake_models.upstream_test_model:UpstreamTestModel",
    "warm-recorder": "tests.fake_models.promises:WarmRecorder",
    "gate": "tests.fake_models.promises:Gate",
    "thread-peak": "tests.fake_models.promises:ThreadPeak",
    "batch-started": "tests.fake_models.promises:StartedMarker",
    "batch-gpu-placed": "tests.fake_models.promises:GpuPlaced",
    "compat-subclassed": "tests.fake_models.compat_model:Subclassed",
    "compat-spawner": "tests.fake_models.compat_model:Spawner",
    "serverless": "tests.fake_models.serverless:Published",
    "module-census": "tests.fake_models.engine:ModuleCensus",
    "slow-import": "tests.fake_models.slow_import",
    "slow": "tests.fake_models.jobs:SlowPredictor",
    "out-of-memory": "tests.fake_models.memory:OutOfMemory",
    "batched-out-of-memory": "tests.fake_models.memory:BatchedOutOfMemory",
    "wraps-out-of-memory": "tests.fake_models.memory:WrapsOutOfMemory",
    "pid": "tests.fake_models.memory:Pid",
    "gpu-fault": "tests.fake_models.gpu_faults:GpuFault",
    "batched-gpu-fault": "tests.fake_models.gpu_faults:BatchedGpuFault",
}


def write_distribution(
    directory: Path, entry_points: dict[str, str], *, group: str = MODEL_NAMESPACE,
    name: str = "deepaas_test_models",
) -> Path:
    """Register entry points as an installed distribution in ``directory``."""
    dist = directory / f"{name}-0.0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n"
    )
    lines = [f"[{group}]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return directory


@pytest.fixture
def installed_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The fake models installed as entry points (for this test only).

    Worker processes inherit ``sys.path``; subprocesses get PYTHONPATH from
    :func:`subprocess_env`.
    """
    site = tmp_path_factory.mktemp("site")
    write_distribution(site, FAKE_MODELS)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        importlib.invalidate_caches()


def spec(name: str) -> ModelSpec:
    """The spec of a fake model, as loading would make it."""
    return ModelSpec(name, FAKE_MODELS[name], MODEL_NAMESPACE)


def subprocess_env(*extra_paths: Path, **overrides: str) -> dict[str, str]:
    """Environment for a deepaas console script run as a real subprocess."""
    env = dict(os.environ)
    paths = [str(p) for p in extra_paths] + [str(ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.pop("DEEPAAS_V2_MODEL", None)
    env.update(overrides)
    return env


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the demo model's weights and training state out of $HOME."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("DEEPAAS_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.delenv("DEEPAAS_V2_MODEL", raising=False)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start real ``deepaas-run`` processes; each is killed and reaped at the end.

    ``start_server(*options, env=..., port=...)`` answers a
    :class:`tests.servers.RunningServer` whose log is a file in ``tmp_path``.
    """
    from tests.servers import RunningServer

    started: list[RunningServer] = []

    def start(*args: str, **options: Any) -> RunningServer:
        options.setdefault("log", tmp_path / f"deepaas-run-{len(started)}.log")
        server = RunningServer(*args, **options)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.close()
