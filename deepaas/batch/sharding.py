"""Splitting the sorted input list between the tasks of a job array.

Input number ``i`` (0-based, in sorted order) belongs to shard ``i % N``:
the split depends only on the input list and ``N``, every input lands in
exactly one shard, shard sizes differ by at most one, and a task can pick
its inputs while streaming, without knowing how many there are.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping


class ShardError(ValueError):
    """A shard specification that cannot be used, with a message for the user."""


@dataclasses.dataclass(frozen=True)
class Shard:
    """Task ``index`` of ``count`` (0 <= index < count)."""

    index: int = 0
    count: int = 1
    #: Where the shard came from: ``--shard``, ``SLURM`` or ``none``.
    source: str = "none"

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ShardError(f"the number of shards must be >= 1 (got {self.count})")
        if not 0 <= self.index < self.count:
            raise ShardError(
                f"shard index must be between 0 and {self.count - 1} "
                f"(got {self.index} of {self.count})"
            )

    @property
    def is_whole(self) -> bool:
        """Whether this shard holds every input."""
        return self.count == 1

    def contains(self, position: int) -> bool:
        """Whether input number ``position`` (0-based, sorted) is this shard's."""
        return position % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """Read ``--shard K/N`` (0-based ``K``)."""
    index, sep, count = text.partition("/")
    try:
        if not sep:
            raise ValueError
        shard_index, shard_count = int(index), int(count)
    except ValueError:
        raise ShardError(
            f"--shard takes K/N with 0 <= K < N, e.g. 0/4 (got {text!r})"
        ) from None
    if shard_count < 1 or not 0 <= shard_index < shard_count:
        raise ShardError(f"--shard takes K/N with 0 <= K < N (got {text!r})")
    return Shard(shard_index, shard_count, "--shard")


def shard_from_slurm(environ: Mapping[str, str] | None = None) -> Shard | None:
    """This array task's shard, or None outside a SLURM job array.

    Task ids need not start at 0 nor be consecutive (``--array=1-9:2``):
    the shard index is ``(ID - MIN) / STEP`` and the count is
    ``SLURM_ARRAY_TASK_COUNT``.  Arrays given as irregular lists
    (``--array=1,4,9``) cannot be mapped and raise :class:`ShardError`.
    """
    env = os.environ if environ is None else environ
    task_id = env.get("SLURM_ARRAY_TASK_ID")
    if not task_id:
        return None
    try:
        ident = int(task_id)
        count = int(env["SLURM_ARRAY_TASK_COUNT"])
        minimum = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        step = int(env.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
    except (KeyError, ValueError):
        raise ShardError(
            "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT/MIN are missing "
            "or not numbers; give the shard by hand with --shard K/N"
        ) from None
    offset = ident - minimum
    if step < 1 or offset < 0 or offset % step or offset // step >= count:
        raise ShardError(
            f"cannot map array task {ident} (min {minimum}, step {step}, "
            f"{count} tasks) to a shard: use a range such as --array=0-{count - 1} "
            "or give --shard K/N"
        )
    return Shard(offset // step, count, "SLURM")
