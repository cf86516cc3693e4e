"""The schema of a training as answered, for both API descriptions.

A training's JSON keeps DEEPaaS 2.x's keys (``uuid``, ``date``, ``args``,
``status``, ``message``, ``result``) and adds a few; a SLURM training adds
its job in ``slurm``, with SLURM's own state of it, because its status stays
``running`` while the job waits in SLURM's queue (2.x clients stop polling
on any other status).
"""

from __future__ import annotations

from typing import Any

_TRAINING_PROPERTIES: dict[str, Any] = {
    "uuid": {"type": "string", "description": "Identifier of the training"},
    "date": {"type": "string", "description": "When it was submitted"},
    "args": {"type": "object", "description": "Arguments it was started with"},
    "status": {
        "type": "string",
        "enum": ["queued", "running", "done", "error", "cancelled"],
        "description": "running until it ends (a SLURM training too, while its "
        "job waits in SLURM's queue); queued only while waiting for a slot "
        "under --max-concurrent-trainings",
    },
    "message": {"type": "string", "description": "Why it failed"},
    "result": {"type": "object", "description": "output, finish_date, duration"},
    "model": {"type": "string", "description": "The model it trains"},
    "start_date": {"type": "string", "description": "When it left the queue"},
    "finish_date": {
        "type": "string",
        "description": "When it ended (any final status)",
    },
    "links": {"type": "array", "items": {"type": "object"}},
}


def _nullable_string(description: str, version: int) -> dict[str, Any]:
    """A string that may be null: Swagger 2.0 says so with ``x-nullable``."""
    if version == 2:
        return {"type": "string", "x-nullable": True, "description": description}
    return {"type": ["string", "null"], "description": description}


def training_schema(version: int) -> dict[str, Any]:
    """A training as answered; ``slurm`` only with ``--train-backend slurm``."""
    slurm = {
        "type": "object",
        "description": "The training's SLURM job (trainings run by SLURM only)",
        "properties": {
            "job_id": {"type": "string", "description": "SLURM's job id"},
            "node": _nullable_string(
                "Where the job runs, once it has started", version
            ),
            "state": _nullable_string(
                "SLURM's state of the job when the server last asked (PENDING, "
                "RUNNING, COMPLETING...); once the training has ended, the state "
                "that ended it (COMPLETED, FAILED, CANCELLED, TIMEOUT...)",
                version,
            ),
            "reason": _nullable_string(
                "SLURM's reason for that state, e.g. why a PENDING job waits "
                "(Resources, Priority)",
                version,
            ),
        },
    }
    return {"type": "object", "properties": {**_TRAINING_PROPERTIES, "slurm": slurm}}


__all__ = ["training_schema"]
