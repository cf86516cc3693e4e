"""deepaas-predict: run a model over many inputs, alone or as a SLURM job array.

    deepaas-predict [options] INPUT... --output-dir DIR
    deepaas-predict [options] --input-jsonl ARGS.jsonl --output-dir DIR
    deepaas-predict merge --output-dir DIR [INPUT...]
    deepaas-predict --verify --output-dir DIR

See docs/batch.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from deepaas.batch import (
    BatchOptions,
    BatchRun,
    InputError,
    Inputs,
    JsonlInputs,
    Shard,
    ShardError,
    UsageError,
    collect_files,
    default_tasks,
    inputs_from_run_file,
    merge_results,
    parse_shard,
    read_run_file,
    sbatch_script,
    shard_from_slurm,
)
from deepaas.batch.legacy_output import write_legacy_output
from deepaas.batch.provenance import PROVENANCE_FILE, verify_run, write_run_record
from deepaas.batch.runfile import check_run, identity_for, restart_token, settle_run
from deepaas.batch.sbatch import gpu_request
from deepaas.cmd import fail
from deepaas.cmd._settings import PredictSettings, predict_settings
from deepaas.engine import EngineSettings, plan_from_settings
from deepaas.engine.devices import read_need
from deepaas.engine.processes import children_skip_main_module
from deepaas.exceptions import DeepaasError
from deepaas.log import setup_logging
from deepaas.model.loading import (
    MODEL_ENV_VAR,
    ModelSpec,
    available_models,
    select_models,
)
from deepaas.model.wrapper import load_wrapped
from deepaas.version import version_line

PROG = "deepaas-predict"
LOG = logging.getLogger("deepaas.predict")


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors raised instead of printed with the usage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="input files, directories (searched recursively), globs such as "
        "'data/**/*.wav' (quote them), or @FILE for a list of inputs, one a line",
    )
    parser.add_argument(
        "-i",
        "--input",
        dest="more_inputs",
        action="append",
        default=[],
        metavar="INPUT",
        help="one more input (repeatable)",
    )
    parser.add_argument(
        "--pattern",
        action="append",
        default=[],
        metavar="GLOB",
        help="take only the files matching GLOB (e.g. '*.wav') from input "
        "directories; repeatable; default: every file",
    )
    parser.add_argument(
        "--input-jsonl",
        metavar="FILE",
        help="for models without a file argument: one JSON object of predict "
        "arguments per line, each line one input",
    )
    parser.add_argument(
        "-o",
        "--output-dir",
        required=True,
        metavar="DIR",
        help="folder of the results (created if missing)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The options of a batch run."""
    parser = _Parser(
        prog=PROG,
        description="Run a DEEPaaS model's predict over many inputs; inside a SLURM "
        "job array, each task takes its share. Results go to OUTPUT_DIR as JSON "
        "Lines, one record per input; rerunning the same command resumes. "
        f"Combine the tasks' results with '{PROG} merge --output-dir DIR'.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=version_line(),
        help="print the version (e.g. 3.0.0, or 3.0.0-dev0) and exit",
    )
    _add_input_options(parser)
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model-name",
        metavar="NAME",
        help=f"the model to run (entry-point group deepaas.v2.model); default: "
        f"${MODEL_ENV_VAR}, else the only installed model, else the demo model",
    )
    model.add_argument(
        "--config-file",
        metavar="FILE",
        help="a deepaas config file ([DEFAULT] section); its model_name, warm, "
        "gpus, workers_per_gpu and log_level apply unless given here",
    )
    model.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a predict argument for every input, converted by the model's field "
        "(repeat a list argument's NAME, or give a JSON list); repeatable",
    )
    model.add_argument(
        "--file-arg",
        metavar="NAME",
        help="the file argument that receives each input (default: the model's "
        "only file argument)",
    )
    model.add_argument(
        "--accept",
        "--content-type",
        dest="accept",
        metavar="MEDIA_TYPE",
        help="media type of the answers, among those the model offers "
        "(non-JSON answers are written as files under OUTPUT_DIR/outputs)",
    )
    model.add_argument(
        "--warm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="call the model's warm() in each worker (default: on)",
    )
    # deepaas-run's spelling (oslo.config's) works too.
    model.add_argument(
        "--nowarm", dest="warm", action="store_false", help=argparse.SUPPRESS
    )
    run = parser.add_argument_group("execution")
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="model processes, each warmed once (default 1); 0 runs the model in "
        "this process (least overhead, no protection from crashes)",
    )
    run.add_argument(
        "--gpus",
        metavar="auto|none|LIST",
        help="GPUs the workers may use (default auto: every visible one)",
    )
    run.add_argument(
        "--shard",
        metavar="K/N",
        help="process only shard K of N (0 <= K < N) of the sorted inputs; "
        "inside a SLURM job array the shard comes from SLURM_ARRAY_TASK_ID",
    )
    run.add_argument(
        "--retry-errors",
        action="store_true",
        help="redo the inputs that failed in earlier runs",
    )
    run.add_argument(
        "--fail-fast", action="store_true", help="stop at the first failing input"
    )
    run.add_argument(
        "--restart",
        action="store_true",
        help="start a new run in OUTPUT_DIR even though it holds another run's "
        "results (kept in the files, no longer counted); without it, a command "
        "that differs from the recorded run (model, version, --arg, --accept, "
        "--file-arg) is refused",
    )
    run.add_argument(
        "--term-grace",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, time the inputs in hand get to finish (default 20)",
    )
    run.add_argument(
        "--progress-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="when not on a terminal, log progress this often (default 30; 0: never)",
    )
    run.add_argument(
        "--log-level",
        default=None,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="log level (default INFO)",
    )
    slurm = parser.add_argument_group("SLURM")
    slurm.add_argument(
        "--print-sbatch",
        action="store_true",
        help="print a job-array script for these inputs and exit",
    )
    slurm.add_argument(
        "--tasks",
        type=int,
        metavar="N",
        help="array tasks in the --print-sbatch script (default: about 1000 "
        "inputs per task)",
    )
    return parser


def build_merge_parser() -> argparse.ArgumentParser:
    """The options of ``deepaas-predict merge``."""
    parser = _Parser(
        prog=f"{PROG} merge",
        description="Combine the records of the run recorded in OUTPUT_DIR/run.json "
        "into OUTPUT_DIR/merged.jsonl (one record per input, in input order) and, "
        "when some inputs have no record, list them in OUTPUT_DIR/missing.txt. The "
        "inputs are those of the run unless given here.",
    )
    _add_input_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``deepaas-predict``; returns the exit status."""
    if argv is None:  # the console script: its workers need nothing of it
        children_skip_main_module()
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_list[:1] == ["merge"]:
            return _merge(args_list[1:])
        if args_list[:1] in (["--verify"], ["verify"]):
            return _verify(args_list[1:])
        return _predict(args_list)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except (UsageError, ShardError, InputError) as exc:
        message = str(exc)
        if isinstance(exc, UsageError) and "--help" not in message:
            message += f" (see {PROG} --help)"
        return fail(PROG, message, 2)
    except DeepaasError as exc:
        return fail(PROG, exc.message, 1)
    except OSError as exc:
        reason = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        return fail(PROG, reason, 1)


def _inputs(
    args: argparse.Namespace, output_dir: Path
) -> tuple[Inputs, dict[str, Any]]:
    sources = [*args.inputs, *args.more_inputs]
    if args.input_jsonl and sources:
        raise UsageError("give input files or --input-jsonl, not both")
    if args.input_jsonl:
        jsonl = JsonlInputs(args.input_jsonl)
        return jsonl, {"kind": "jsonl", "path": jsonl.path}
    if not sources:
        raise UsageError(
            "no inputs: give files, directories, globs or @lists, or --input-jsonl FILE"
        )
    patterns = args.pattern or ["*"]
    files = collect_files(sources, patterns=patterns, exclude_dirs=[str(output_dir)])
    if not len(files):
        raise InputError(
            f"no input files found in {', '.join(sources)} "
            f"(patterns: {', '.join(patterns)})"
        )
    absolute = [
        s if s.startswith("@") and not os.path.exists(s) else os.path.abspath(s)
        for s in sources
    ]
    absolute = [
        f"@{os.path.abspath(s[1:])}"
        if s.startswith("@") and not os.path.exists(s)
        else s
        for s in absolute
    ]
    return files, {"kind": "files", "sources": absolute, "patterns": patterns}


def _settings(args: argparse.Namespace) -> PredictSettings:
    from oslo_config import cfg

    try:
        return predict_settings(
            config_file=args.config_file,
            model_name=args.model_name,
            workers=args.workers,
            gpus=args.gpus,
            warm=args.warm,
            log_level=args.log_level,
            prog=PROG,
        )
    except (cfg.Error, SystemExit) as exc:
        raise UsageError(f"--config-file {args.config_file}: {exc}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _choose_model(settings: PredictSettings) -> ModelSpec:
    names = settings.model_names
    if len(names) > 1:
        raise UsageError(
            f"{PROG} runs one model at a time (got {', '.join(names)}); "
            "choose one with --model-name"
        )
    return select_models(names, available_models())[0]


def _plan_devices(
    spec: ModelSpec, engine: EngineSettings
) -> list[dict[str, str]] | None:
    """Each worker's environment (CUDA_VISIBLE_DEVICES), as deepaas-run plans it.

    :func:`deepaas.engine.plan_from_settings` reads the model's declared
    resources (in a short-lived probe process) and the GPUs this task may use
    (``--gpus``, ``CUDA_VISIBLE_DEVICES``, SLURM's allocation).  A model asking
    for GPUs gets one worker per GPU group (times ``workers-per-gpu``); no
    GPU is held back for trainings.  ``--workers 0`` plans nothing.
    """
    if engine.workers == 0:
        return None
    result = asyncio.run(plan_from_settings([spec], engine, trains_locally=False))
    envs = result.get(spec.name)
    return [dict(env) for env in envs] if envs else None


def _predict(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    settings = _settings(args)
    if args.term_grace < 0 or args.progress_interval < 0:
        raise UsageError("--term-grace and --progress-interval must be >= 0")
    if args.tasks is not None and (args.tasks < 1 or not args.print_sbatch):
        raise UsageError("--tasks N (N >= 1) goes with --print-sbatch")
    fixed: list[tuple[str, str]] = []
    for item in args.arg:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--arg takes NAME=VALUE (got {item!r})")
        fixed.append((name.strip(), value))
    level = setup_logging(level=settings.log_level)
    if args.shard:
        shard = parse_shard(args.shard)
    else:
        shard = shard_from_slurm() or Shard()
    output_dir = Path(args.output_dir).absolute()
    spec = _choose_model(settings)
    inputs, given = _inputs(args, output_dir)
    gpus = settings.engine.gpus
    if args.print_sbatch:
        return _print_sbatch(
            args, argv, spec, inputs, given, fixed, output_dir,
            option=gpus, asked=args.gpus is not None,
        )  # fmt: skip
    output_dir.mkdir(parents=True, exist_ok=True)
    options = BatchOptions(
        output_dir=output_dir,
        model=spec,
        fixed_args=fixed,
        file_arg=args.file_arg,
        accept=args.accept,
        workers=args.workers,
        worker_envs=_plan_devices(spec, settings.engine),
        warm=settings.engine.warm,
        shard=shard,
        retry_errors=args.retry_errors,
        fail_fast=args.fail_fast,
        progress_interval=args.progress_interval,
        term_grace=args.term_grace,
        log_level=level,
        restart=restart_token() if args.restart else None,
        run_inputs=given,
    )
    if shard.source != "none":
        LOG.info("shard %s (from %s) of %d inputs", shard, shard.source, len(inputs))
    summary = BatchRun(options, inputs).run()
    print(f"{PROG}: {summary.line()}", file=sys.stderr, flush=True)
    if _is_2x_command_line(args):
        written = write_legacy_output(output_dir, args.more_inputs[0])
        if written is not None:
            LOG.info("answer also saved as %s (DEEPaaS 2.x's name)", written)
    return summary.exit_code


def _is_2x_command_line(args: argparse.Namespace) -> bool:
    """``deepaas-predict -i FILE -o DIR``: DEEPaaS 2.x's one-file form."""
    return (
        len(args.more_inputs) == 1
        and not args.inputs
        and not args.input_jsonl
        and os.path.isfile(args.more_inputs[0])
    )


def _self_command() -> list[str]:
    script = Path(sys.executable).parent / PROG
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "deepaas.cmd.predict"]


def _print_sbatch(
    args: argparse.Namespace,
    argv: list[str],
    spec: ModelSpec,
    inputs: Inputs,
    given: dict[str, Any],
    fixed: list[tuple[str, str]],
    output_dir: Path,
    *,
    option: str,
    asked: bool,
) -> int:
    """Print the job-array script; ``option`` is ``--gpus`` (``asked``: given)."""
    wrapper = load_wrapped(spec)
    identity = identity_for(
        wrapper.describe(),
        fixed_args=fixed,
        accept=args.accept,
        file_arg=args.file_arg,
        jsonl=bool(args.input_jsonl),
    )
    if args.restart:
        # The new run starts now, once, and the tasks (given no --restart)
        # join it: resubmitting the script resumes instead of restarting.
        output_dir.mkdir(parents=True, exist_ok=True)
        settle_run(
            output_dir,
            identity,
            restart=restart_token({}),
            inputs=given,
            count=len(inputs),
        )
    elif output_dir.is_dir():
        check_run(output_dir, identity)
    need = read_need(spec.name, wrapper.resources())
    gpus, suggested = gpu_request(spec.name, need, option, asked=asked)
    tasks = args.tasks or default_tasks(len(inputs))
    command = _self_command() + _task_arguments(argv, spec, output_dir)
    # SLURM writes the tasks' logs into the output folder, and fails a job
    # whose --output folder does not exist.
    output_dir.mkdir(parents=True, exist_ok=True)
    print(
        sbatch_script(
            command=command,
            tasks=tasks,
            count=len(inputs),
            output_dir=str(output_dir),
            workdir=os.getcwd(),
            job_name=f"{PROG}-{spec.name}",
            cpus=max(1, args.workers),
            gpus=gpus,
            suggested_gpus=suggested,
        ),
        end="",
    )
    return 0


def _task_arguments(argv: list[str], spec: ModelSpec, output_dir: Path) -> list[str]:
    """The command line of one array task: this one, less the script options."""
    drop_flag = {"--print-sbatch", "--restart"}
    drop_value = {"--tasks", "--shard", "--model-name", "-o", "--output-dir"}
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in drop_flag:
            continue
        if name in drop_value:
            skip = "=" not in arg
            continue
        kept.append(arg)
    return ["--model-name", spec.name, "--output-dir", str(output_dir), *kept]


def _merge(argv: list[str]) -> int:
    args = build_merge_parser().parse_args(argv)
    setup_logging(level="INFO")
    output_dir = Path(args.output_dir).absolute()
    if not output_dir.is_dir():
        raise UsageError(f"--output-dir {args.output_dir!r} is not a folder")
    if args.inputs or args.more_inputs or args.input_jsonl:
        inputs, _ = _inputs(args, output_dir)
    else:
        inputs = inputs_from_run_file(output_dir)
    run = read_run_file(output_dir) or {}
    report = merge_results(output_dir, inputs, run=run.get("run"))
    for key in report.missing[:10]:
        print(f"{PROG}: missing: {key}", file=sys.stderr)
    if len(report.missing) > 10:
        print(f"{PROG}: ... and {len(report.missing) - 10} more", file=sys.stderr)
    print(f"{PROG}: {report.line()}", file=sys.stderr, flush=True)
    write_run_record(output_dir, merged=True)
    return report.exit_code


def build_verify_parser() -> argparse.ArgumentParser:
    """The options of ``deepaas-predict --verify``."""
    parser = _Parser(
        prog=f"{PROG} --verify",
        description="Check that the inputs (and output files) of the run in "
        f"OUTPUT_DIR still hold what it read and wrote, by the SHA-256s of "
        f"OUTPUT_DIR/{PROVENANCE_FILE}. Exit status 0 when everything matches, "
        "1 with one line per altered or missing file otherwise.",
    )
    parser.add_argument("-o", "--output-dir", required=True, help="the run's folder")
    return parser


def _verify(argv: list[str]) -> int:
    args = build_verify_parser().parse_args(argv)
    output_dir = Path(args.output_dir).absolute()
    if not output_dir.is_dir():
        raise UsageError(f"--output-dir {args.output_dir!r} is not a folder")
    try:
        problems = verify_run(output_dir)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        return fail(PROG, str(exc), 1)
    for problem in problems:
        print(f"{PROG}: {problem}", file=sys.stderr)
    if problems:
        print(
            f"{PROG}: {output_dir} does not match its inputs: "
            f"{len(problems)} problem(s)",
            file=sys.stderr,
            flush=True,
        )
        return 1
    print(f"{PROG}: {output_dir} matches its inputs", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
