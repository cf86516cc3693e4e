"""SLURM's command-line tools, as the SLURM training backend uses them.

deepaas talks to SLURM through ``sbatch``, ``squeue``, ``scontrol``,
``sacct`` and ``scancel``, the interface every site supports and the one its
users already know: a job deepaas submits is an ordinary batch job whose
script lies in the training's directory.  ``sacct`` needs SLURM's accounting
database; where there is none (``Slurm accounting storage is disabled``),
jobs that have left the controller's memory are settled from the files the
job itself wrote (see :mod:`deepaas.training.backends.slurm.job`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from deepaas.exceptions import DeepaasError
from deepaas.training.settings import SlurmSettings

#: The logger keeps the name it had before the backends moved, so that a
#: logging set-up (or a search of the logs) naming it still finds its lines.
LOG = logging.getLogger("deepaas.training.slurm_commands")

#: SLURM states (``squeue %T``) in which the job has not started yet.
PENDING_STATES = frozenset(
    {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD"}
)
#: SLURM states in which the job has ended for good.
ENDED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)

_COMMAND_TIMEOUT = 60.0
#: What sbatch says when the controller, not the job, is the problem.
_TRANSIENT = (
    "unable to contact",
    "socket timed out",
    "temporarily",
    "try again",
    "slurm_persist_conn",
    "connection refused",
)


class SlurmUnavailable(DeepaasError):
    """SLURM cannot be used: misconfigured, or its controller does not answer."""

    status = 503


class SlurmRefused(DeepaasError):
    """sbatch refused a training's job; the message is SLURM's own."""

    status = 400


@dataclasses.dataclass(frozen=True)
class JobInfo:
    """What SLURM says about one job."""

    job_id: str
    state: str
    reason: str = ""
    node: str = ""
    exit_code: str = ""

    @property
    def pending(self) -> bool:
        return self.state in PENDING_STATES

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES

    @property
    def shown_reason(self) -> str | None:
        """SLURM's reason for the job's state; None where it gives none."""
        return None if self.reason in ("", "None", "(null)") else self.reason


def job_script(
    settings: SlurmSettings,
    *,
    name: str,
    job_dir: Path,
    output: Path,
    gpus: int,
    module: str = "deepaas.training.slurm_job",
    kind: str = "training",
) -> str:
    """The batch script of one job: ``#SBATCH`` options, set-up, the job.

    ``module`` is what the job runs (``python -m MODULE JOB_DIR``): a
    training by default, a prediction job for :mod:`deepaas.jobs.slurm`.
    """
    options = [
        f"--job-name={name}",
        f"--output={output}",
        "--open-mode=append",
        f"--chdir={job_dir}",
        "--ntasks=1",
    ]
    for flag, value in (
        ("partition", settings.partition),
        ("account", settings.account),
        ("qos", settings.qos),
        ("time", settings.time),
        ("mem", settings.mem),
    ):
        if value:
            options.append(f"--{flag}={value}")
    if settings.cpus:
        options.append(f"--cpus-per-task={settings.cpus}")
    if gpus:
        options.append(
            f"--gpus={gpus}" if settings.gpu_request == "gpus" else f"--gres=gpu:{gpus}"
        )
    lines = ["#!/bin/bash", f"# A deepaas {kind}; written by deepaas-run."]
    lines += [f"#SBATCH {option}" for option in options]
    lines += [f"#SBATCH {line.strip()}" for line in settings.sbatch_lines]
    lines += [line for line in settings.setup]
    python = settings.python or sys.executable
    lines.append(f"exec {shlex.quote(python)} -m {module} {shlex.quote(str(job_dir))}")
    return "\n".join(lines) + "\n"


def _missing_tools() -> list[str]:
    return [
        tool
        for tool in ("sbatch", "squeue", "scontrol", "scancel")
        if shutil.which(tool) is None
    ]


def check_cluster(settings: SlurmSettings, *, timeout: float = 30.0) -> None:
    """Fail, with one line saying what to fix, unless jobs can be submitted."""
    missing = _missing_tools()
    if missing:
        raise SlurmUnavailable(
            f"--train-backend slurm: {', '.join(missing)} not found on PATH; run "
            "deepaas-run on a SLURM login node"
        )
    try:
        # SLURM's commands are found on PATH, as on any login node.
        ping = subprocess.run(  # noqa: S603
            ["scontrol", "ping"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmUnavailable(
            f"--train-backend slurm: `scontrol ping` failed: {exc}"
        ) from None
    if ping.returncode != 0 or "UP" not in ping.stdout:
        answer = " ".join((ping.stdout + ping.stderr).split())
        raise SlurmUnavailable(
            f"--train-backend slurm: the SLURM controller does not answer "
            f"(`scontrol ping`: {answer})"
        )
    if settings.partition:
        shown = subprocess.run(  # noqa: S603 (argv list, no shell)
            ["scontrol", "show", "partition", settings.partition],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if shown.returncode != 0 or "PartitionName=" not in shown.stdout:
            raise SlurmUnavailable(
                f"--slurm-partition: SLURM has no partition "
                f"{settings.partition!r} (see `sinfo`)"
            )


async def _run(*argv: str, cwd: Path | None = None) -> tuple[int, str, str]:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise SlurmUnavailable(f"cannot run {argv[0]}: {exc}") from None
    try:
        out, err = await asyncio.wait_for(process.communicate(), _COMMAND_TIMEOUT)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise SlurmUnavailable(
            f"`{argv[0]}` did not answer within {_COMMAND_TIMEOUT:g} s"
        ) from None
    return (
        process.returncode or 0,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
    )


class SlurmClient:
    """Submits, queries and cancels jobs with SLURM's commands."""

    def __init__(self) -> None:
        self._sacct_works = True

    async def submit(self, script: Path) -> str:
        """Submit ``script``; answer the job id or raise with SLURM's message."""
        code, out, err = await _run(
            "sbatch", "--parsable", str(script), cwd=script.parent
        )
        job_id = out.strip().split(";")[0]
        if code == 0 and job_id.isdigit():
            return job_id
        message = " ".join((err or out).split()) or f"sbatch exited with {code}"
        error = f"SLURM refused the training's job: {message}"
        if any(word in message.lower() for word in _TRANSIENT):
            raise SlurmUnavailable(error)
        raise SlurmRefused(error)

    async def query(self, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """What SLURM knows of these jobs; a job it forgot is left out."""
        if not job_ids:
            return {}
        code, out, err = await _run(
            "squeue",
            "-h",
            "-t",
            "all",
            "-j",
            ",".join(job_ids),
            "-o",
            "%i|%T|%r|%N",
        )
        if code != 0 and "invalid job id" not in err.lower():
            raise SlurmUnavailable(f"squeue failed: {' '.join(err.split())}")
        infos: dict[str, JobInfo] = {}
        for line in out.splitlines():
            fields = line.strip().split("|")
            if len(fields) == 4 and fields[0] in job_ids:
                infos[fields[0]] = JobInfo(fields[0], fields[1], fields[2], fields[3])
        for job_id in job_ids:
            if job_id not in infos:
                info = await self._show(job_id) or await self._sacct(job_id)
                if info is not None:
                    infos[job_id] = info
        return infos

    async def _show(self, job_id: str) -> JobInfo | None:
        code, out, _ = await _run("scontrol", "show", "job", "-o", job_id)
        if code != 0:
            return None
        fields = dict(item.split("=", 1) for item in out.split() if "=" in item)
        if fields.get("JobId") != job_id or "JobState" not in fields:
            return None
        node = fields.get("NodeList", "")
        return JobInfo(
            job_id,
            fields["JobState"],
            fields.get("Reason", ""),
            "" if node == "(null)" else node,
            fields.get("ExitCode", ""),
        )

    async def _sacct(self, job_id: str) -> JobInfo | None:
        if not self._sacct_works or shutil.which("sacct") is None:
            return None
        code, out, err = await _run(
            "sacct",
            "-X",
            "-n",
            "-P",
            "-j",
            job_id,
            "-o",
            "JobIDRaw,State,Reason,NodeList,ExitCode",
        )
        if code != 0:
            if "disabled" in err.lower():
                self._sacct_works = False  # no accounting database here
            return None
        for line in out.splitlines():
            fields = line.split("|")
            if len(fields) == 5 and fields[0] == job_id:
                # sacct writes "CANCELLED by 1234".
                state = fields[1].split()[0] if fields[1] else ""
                return JobInfo(job_id, state, fields[2], fields[3], fields[4])
        return None

    async def wait_ended(self, job_id: str, timeout: float | None = None) -> bool:
        """Ask SLURM until the job has ended or is forgotten; answer whether it
        did within ``timeout`` seconds (None: however long it takes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            info = (await self.query([job_id])).get(job_id)
            if info is None or info.ended:
                return True
            await asyncio.sleep(0.2)
        return False

    async def signal(self, job_id: str, name: str) -> None:
        """Send signal ``name`` to every process of the running job."""
        await _run("scancel", "--full", f"--signal={name}", job_id)

    async def cancel(self, job_id: str) -> None:
        """Cancel the job: SLURM sends SIGTERM, then SIGKILL after its KillWait."""
        code, _, err = await _run("scancel", job_id)
        if code != 0 and "already completing or completed" not in err.lower():
            LOG.warning("scancel %s: %s", job_id, " ".join(err.split()))


__all__ = [
    "ENDED_STATES",
    "PENDING_STATES",
    "JobInfo",
    "SlurmClient",
    "SlurmRefused",
    "SlurmSettings",
    "SlurmUnavailable",
    "check_cluster",
    "job_script",
]
