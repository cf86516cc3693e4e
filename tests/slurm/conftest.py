"""A real SLURM cluster for the tests, started on demand.

The README's single test command must run these tests in CI too, so when
no controller answers and the tests run as root beside the project's
``../shared/slurm/start-slurm.sh``, the fixture starts a one-node cluster
(installing Debian's SLURM packages on first use) and stops it afterwards.
Anywhere else the tests skip and say why.  Set ``DEEPAAS_TEST_SLURM=skip``
to skip them, or ``DEEPAAS_TEST_SLURM=no-start`` to use only a cluster that
already runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT

SLURM_SCRIPTS = ROOT.parent / "shared" / "slurm"


def _controller_answers() -> tuple[bool, str]:
    if shutil.which("sbatch") is None:
        return False, "SLURM is not installed (no sbatch)"
    try:
        ping = subprocess.run(
            ["scontrol", "ping"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`scontrol ping` failed: {exc}"
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return False, (
            "no SLURM controller answers `scontrol ping`: "
            f"{(ping.stdout + ping.stderr).strip()}"
        )
    return True, ""


#: Pretend GPUs the started cluster declares (the SLURM training tests use 2).
CLUSTER_GPUS = 2


def _start_cluster() -> str:
    """Start the shared one-node cluster; return why not, or ''."""
    script = SLURM_SCRIPTS / "start-slurm.sh"
    if not script.exists():
        return f"{script} is not there to start a cluster"
    if os.geteuid() != 0:
        return f"{script} needs root"
    env = {**os.environ, "LOCAL_SLURM_GPUS": str(CLUSTER_GPUS)}
    try:
        done = subprocess.run(
            ["bash", str(script)], capture_output=True, text=True, timeout=600,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return f"{script} did not finish within 600 s"
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        return f"{script} failed: {' / '.join(tail)}"
    return ""


@pytest.fixture(scope="session")
def slurm() -> Iterator[None]:
    """A SLURM controller that answers, or a skip that says why."""
    mode = os.environ.get("DEEPAAS_TEST_SLURM", "")
    if mode == "skip":
        pytest.skip("DEEPAAS_TEST_SLURM=skip")
    ok, why = _controller_answers()
    started = False
    if not ok and mode != "no-start":
        reason = _start_cluster()
        if reason:
            pytest.skip(f"{why}; could not start one: {reason}")
        ok, why = _controller_answers()
        started = ok
    if not ok:
        pytest.skip(why)
    yield
    if started:
        subprocess.run(
            ["bash", str(SLURM_SCRIPTS / "stop-slurm.sh"), "--purge"],
            capture_output=True, timeout=120,
        )


def _node_gpus() -> int:
    shown = subprocess.run(["scontrol", "show", "node", "-o"], capture_output=True,
                           text=True, timeout=30)
    match = re.search(r"\bGres=gpu:(\d+)", shown.stdout)
    return int(match.group(1)) if match else 0


@pytest.fixture(scope="session")
def slurm_gpus(slurm: None) -> int:
    """A cluster whose node has CLUSTER_GPUS pretend GPUs, or a skip saying why.

    A cluster started without them is started again with
    ``LOCAL_SLURM_GPUS`` (which restarts its daemons) when the tests may.
    """
    if _node_gpus() >= CLUSTER_GPUS:
        return CLUSTER_GPUS
    if os.environ.get("DEEPAAS_TEST_SLURM", "") == "no-start":
        pytest.skip(f"the cluster has fewer than {CLUSTER_GPUS} GPUs "
                    "(DEEPAAS_TEST_SLURM=no-start)")
    reason = _start_cluster()
    if reason:
        pytest.skip(f"the cluster has fewer than {CLUSTER_GPUS} GPUs: {reason}")
    if _node_gpus() < CLUSTER_GPUS:
        pytest.skip(f"the cluster has fewer than {CLUSTER_GPUS} GPUs")
    return CLUSTER_GPUS
