"""A ready-to-edit SLURM job-array script for a batch run."""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence

from deepaas.batch.options import UsageError
from deepaas.engine.devices import GpuNeed

#: Inputs per array task that ``--print-sbatch`` aims at by default.
INPUTS_PER_TASK = 1000
#: Many clusters cap arrays at MaxArraySize = 1001 tasks.
MAX_TASKS = 1000


def default_tasks(count: int) -> int:
    """About ``INPUTS_PER_TASK`` inputs per task, at most ``MAX_TASKS`` tasks."""
    return max(1, min(MAX_TASKS, math.ceil(count / INPUTS_PER_TASK)))


def gpu_request(
    model: str, need: GpuNeed, option: str, *, asked: bool
) -> tuple[int, int]:
    """How many GPUs each array task asks SLURM for, and how many to suggest.

    A GPU line makes a task wait for a GPU and be charged for it, so it is
    written only when the task will use one.  ``need`` is the model's
    declaration, ``option`` the ``--gpus`` value and ``asked`` whether it
    was given.  Returns ``(request, suggestion)``: a model that needs GPUs
    requests its count; one that only prefers a GPU requests it when asked
    (``--gpus auto`` or a list of indices), else it is only suggested in a
    comment; ``--gpus none`` requests none (a :class:`UsageError` for a
    model that needs GPUs: its tasks could not start).  A list of indices
    counts among the task's GPUs, so it asks for as many as its highest
    index needs.
    """
    value = option.strip().lower()
    if not need.count:
        return 0, 0
    if value == "none":
        if need.required:
            raise UsageError(
                f"--gpus none: model {model!r} needs {need.count} GPU(s) per "
                "worker; its tasks could not start"
            )
        return 0, 0
    if value in ("auto", "all", ""):
        if need.required or asked:
            return need.count, 0
        return 0, need.count
    tokens = [t for t in value.replace(" ", "").split(",") if t]
    if not tokens or not all(t.isdigit() for t in tokens):
        raise UsageError(
            f"--gpus takes 'auto', 'none' or indices such as 0,2 (got {option!r})"
        )
    return max(need.count, max(int(t) for t in tokens) + 1), 0


def sbatch_script(
    *,
    command: Sequence[str],
    tasks: int,
    count: int,
    output_dir: str,
    workdir: str,
    job_name: str,
    cpus: int = 1,
    gpus: int = 0,
    suggested_gpus: int = 0,
) -> str:
    """The text of an ``sbatch`` script running ``command`` as a job array.

    ``gpus`` is the GPU request of each task; ``suggested_gpus`` one left
    commented out, for a model that can use GPUs without needing them.
    """
    per_task = math.ceil(count / tasks) if tasks else 0
    quoted = " ".join(shlex.quote(part) for part in command)
    lines = [
        "#!/bin/bash",
        f"# {count} inputs in {tasks} array task(s), about {per_task} per task.",
        "# Each task picks its share of the sorted inputs from SLURM_ARRAY_TASK_ID;",
        "# resubmitting the same script skips the inputs already done.",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --array=0-{tasks - 1}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={max(1, cpus)}",
    ]
    if gpus:
        lines.append(f"#SBATCH --gpus={gpus}")
    elif suggested_gpus:
        lines += [
            "# The model can use a GPU but does not need one: --gpus auto asks for",
            "# it (or remove one '#' below).",
            f"##SBATCH --gpus={suggested_gpus}",
        ]
    lines += [
        f"#SBATCH --output={output_dir}/slurm-%A_%a.out",
        "# (the output folder must exist before the job starts: SLURM does not",
        "# create it; --print-sbatch has created it)",
        "# Set the time limit your cluster needs; on SIGTERM at the limit the",
        "# task records what it finished, and a resubmission carries on:",
        "##SBATCH --time=02:00:00",
        "",
        "set -euo pipefail",
        f"cd {shlex.quote(workdir)}",
        "exec " + quoted,
        "",
        "# When every task has finished, combine the results and list the inputs",
        "# that are missing:",
        f"#   deepaas-predict merge --output-dir {shlex.quote(output_dir)}",
        "",
    ]
    return "\n".join(lines)
