"""Batch prediction: many inputs, one record each, split across job-array tasks.

The pieces, in the order a run uses them: :mod:`~deepaas.batch.inputs`
(finding inputs), :mod:`~deepaas.batch.sharding` (which are this task's),
:mod:`~deepaas.batch.runner` (running the model over them as
:mod:`~deepaas.batch.options` says, with
:mod:`~deepaas.batch.pool` worker processes), :mod:`~deepaas.batch.runfile`
(what defines a run), :mod:`~deepaas.batch.results` (the records),
:mod:`~deepaas.batch.merge` and :mod:`~deepaas.batch.sbatch`.  The command
line is :mod:`deepaas.cmd.predict`.
"""

from deepaas.batch.inputs import (
    FileInputs,
    InputError,
    InputItem,
    Inputs,
    JsonlInputs,
    collect_files,
)
from deepaas.batch.merge import MergeReport, inputs_from_run_file, merge_results
from deepaas.batch.options import BatchOptions, Summary, UsageError
from deepaas.batch.results import ResultsWriter, read_records, results_filename
from deepaas.batch.runfile import RunIdentity, read_run_file
from deepaas.batch.runner import BatchRun
from deepaas.batch.sbatch import default_tasks, sbatch_script
from deepaas.batch.sharding import Shard, ShardError, parse_shard, shard_from_slurm

__all__ = [
    "BatchOptions",
    "BatchRun",
    "FileInputs",
    "InputError",
    "InputItem",
    "Inputs",
    "JsonlInputs",
    "MergeReport",
    "ResultsWriter",
    "RunIdentity",
    "Shard",
    "ShardError",
    "Summary",
    "UsageError",
    "collect_files",
    "default_tasks",
    "inputs_from_run_file",
    "merge_results",
    "parse_shard",
    "read_records",
    "read_run_file",
    "results_filename",
    "sbatch_script",
    "shard_from_slurm",
]
