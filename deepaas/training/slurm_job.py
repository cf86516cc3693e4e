"""The entry point of a SLURM training: ``python -m deepaas.training.slurm_job DIR``.

Every batch script deepaas writes names this module, and a script may wait
in SLURM's queue across an upgrade of deepaas, so the name stays here while
the job's code lives in :mod:`deepaas.training.backends.slurm.job`.
"""

from __future__ import annotations

import sys

from deepaas.training.backends.slurm.job import main

if __name__ == "__main__":
    sys.exit(main())
