"""A ready-to-edit SLURM job-array script for a batch run."""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence

#: Inputs per array task that ``--print-sbatch`` aims at by default.
INPUTS_PER_TASK = 1000
#: Many clusters cap arrays at MaxArraySize = 1001 tasks.
MAX_TASKS = 1000


def default_tasks(count: int) -> int:
    """About ``INPUTS_PER_TASK`` inputs per task, at most ``MAX_TASKS`` tasks."""
    return max(1, min(MAX_TASKS, math.ceil(count / INPUTS_PER_TASK)))


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
) -> str:
    """The text of an ``sbatch`` script running ``command`` as a job array."""
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
