"""A model that trains on GPUs, for the SLURM backend's tests.

It declares ``resources = {"gpus": 2}`` as "preferred", so that a server
without GPUs still serves it, while its trainings ask SLURM for two GPUs.
"""

import os

from tests.fake_models.trainers import Trainer


class GpuTrainer(Trainer):
    resources = {"gpus": 2, "gpu": "preferred"}

    def get_metadata(self):
        return {"name": "slurm-gpu-trainer", "description": "trains on two GPUs"}

    def train(self, **kwargs):
        result = super().train(**kwargs)
        result["slurm_job_id"] = os.environ.get("SLURM_JOB_ID")
        return result


class GreedyTrainer(Trainer):
    """Asks for more GPUs than any test node has: SLURM refuses its jobs."""

    resources = {"gpus": 64, "gpu": "preferred"}
