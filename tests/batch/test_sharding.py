"""Shards: every input in exactly one task, whatever K, N and the array ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepaas.batch import (
    FileInputs,
    JsonlInputs,
    Shard,
    ShardError,
    parse_shard,
    shard_from_slurm,
)


def test_parse_shard_reads_k_of_n() -> None:
    assert parse_shard("2/5") == Shard(2, 5, "--shard")


@pytest.mark.parametrize("text", ["5/5", "-1/3", "1", "a/b", "0/0", "1/2/3"])
def test_parse_shard_rejects_what_is_not_k_of_n(text: str) -> None:
    with pytest.raises(ShardError, match="K/N"):
        parse_shard(text)


def test_every_input_lands_in_exactly_one_shard_for_many_k_and_n() -> None:
    for total in (0, 1, 2, 7, 64, 101):
        paths = [f"/in/{i:04d}" for i in range(total)]
        inputs = FileInputs(paths)
        for count in range(1, 12):
            seen: list[str] = []
            sizes = []
            for index in range(count):
                keys = list(inputs.keys(Shard(index, count)))
                assert keys == [i.key for i in inputs.items(Shard(index, count))]
                sizes.append(len(keys))
                seen += keys
            assert sorted(seen) == paths, (total, count)
            assert max(sizes) - min(sizes) <= 1


def test_jsonl_lines_are_sharded_by_line_and_blank_lines_skipped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "args.jsonl"
    path.write_text("".join(f'{{"a": {i}}}\n' if i % 5 else "\n" for i in range(40)))
    inputs = JsonlInputs(str(path))
    assert len(inputs) == 32
    for count in (1, 3, 8):
        keys = [k for i in range(count) for k in inputs.keys(Shard(i, count))]
        assert sorted(keys) == sorted(inputs.keys(Shard()))
        assert len(set(keys)) == 32
    item = next(inputs.items(Shard(1, 3)))
    assert item.line == 2 and item.text == '{"a": 1}\n'
    assert item.key == f"{path}:2"


def _env(
    task: int, count: int, minimum: int, step: int | None = None
) -> dict[str, str]:
    env = {
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_ARRAY_TASK_COUNT": str(count),
        "SLURM_ARRAY_TASK_MIN": str(minimum),
    }
    if step is not None:
        env["SLURM_ARRAY_TASK_STEP"] = str(step)
    return env


def test_slurm_array_ids_map_to_shards_with_offsets_and_steps() -> None:
    assert shard_from_slurm({}) is None
    assert shard_from_slurm(_env(0, 4, 0)) == Shard(0, 4, "SLURM")
    assert shard_from_slurm(_env(3, 4, 0)) == Shard(3, 4, "SLURM")
    assert shard_from_slurm(_env(10, 3, 10)) == Shard(0, 3, "SLURM")
    # --array=1-5:2 runs tasks 1, 3 and 5
    shards = [shard_from_slurm(_env(t, 3, 1, 2)) for t in (1, 3, 5)]
    assert [s.index for s in shards if s] == [0, 1, 2]


@pytest.mark.parametrize(
    "env",
    [
        _env(4, 3, 1, 2),  # an id that is not on the step
        _env(9, 3, 1, 2),  # beyond the count
        {"SLURM_ARRAY_TASK_ID": "2"},  # no count
    ],
)
def test_slurm_arrays_that_cannot_be_mapped_say_so(env: dict[str, str]) -> None:
    with pytest.raises(ShardError, match="--shard"):
        shard_from_slurm(env)
