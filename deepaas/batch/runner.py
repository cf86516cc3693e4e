"""The batch engine: inputs in, one record per input out, resumable.

A run reads what earlier runs recorded in the output folder, skips the
inputs already done, starts the model (in this process with ``workers=0``,
else in worker processes fed ahead by :class:`~deepaas.batch.pool.BatchPool`)
and records every answer as soon as it arrives.  SIGTERM or SIGINT stop
handing out inputs; the inputs in hand get ``term_grace`` seconds to finish,
then the workers are stopped and every record written so far is flushed, so
that rerunning the same command resumes where this one stopped.

The model never gets a user's own file, only copies
(:mod:`~deepaas.batch.copies`).  A run resumes only its own records: what
defines it is checked against ``run.json`` (:mod:`~deepaas.batch.runfile`)
before anything is recorded.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import signal
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

from deepaas.batch.calls import PredictCall
from deepaas.batch.copies import InputCopies, InputUnreadable
from deepaas.batch.inputs import FileInputs, InputItem, Inputs
from deepaas.batch.options import BatchOptions, Summary, UsageError
from deepaas.batch.pool import BatchPool
from deepaas.batch.progress import Progress
from deepaas.batch.results import (
    OUTPUTS_DIR,
    ResultsWriter,
    error_record,
    load_state,
    ok_record,
    output_name,
    results_filename,
    write_output_file,
)
from deepaas.batch.runfile import earlier_run, identity_for, settle_run
from deepaas.exceptions import (
    ArgumentsInvalid,
    DeepaasError,
    ModelError,
    WorkerCrashed,
)
from deepaas.model.description import ModelDescription
from deepaas.model.files import UploadedFile
from deepaas.model.wrapper import (
    PredictOutcome,
    RawArguments,
    load_wrapped,
    model_error,
)

LOG = logging.getLogger("deepaas.predict")


class _Abort(BaseException):
    """A second SIGINT/SIGTERM: stop now, even inside a model call."""


def _content_type(path: str, cache: dict[str, str]) -> str:
    ext = os.path.splitext(path)[1].lower()
    found = cache.get(ext)
    if found is None:
        found = mimetypes.guess_type(f"x{ext}")[0] or "application/octet-stream"
        cache[ext] = found
    return found


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip()
    return media == "application/json" or media.endswith("+json")


class BatchRun:
    """One task of a batch: the inputs of one shard, recorded in one file."""

    def __init__(self, options: BatchOptions, inputs: Inputs) -> None:
        self.options = options
        self.inputs = inputs
        self.summary = Summary()
        self._outputs = options.output_dir / OUTPUTS_DIR
        self._types: dict[str, str] = {}
        self._signal: int | None = None
        self._writer: ResultsWriter | None = None
        self._progress: Progress | None = None
        self._fixed_pairs: list[tuple[str, Any]] = []
        self._fixed_json: dict[str, Any] = {}
        #: Fixed file arguments (--arg NAME=PATH): name -> absolute path.
        self._fixed_files: dict[str, str] = {}
        self._file_arg: str | None = None
        self._file_args: set[str] = set()
        self._copies = InputCopies()
        #: The id of the run this task belongs to (None until known).
        self._run_id: str | None = None
        #: What the run did so far: input key -> done (True) or failed.
        self._state: dict[str, bool] = {}

    # -- set-up -------------------------------------------------------------

    def _plan(self) -> int:
        """Count this shard's inputs; return how many are left to do."""
        state = self._state
        summary = self.summary
        summary.total = summary.skipped_ok = summary.skipped_failed = 0
        for key in self.inputs.keys(self.options.shard):
            summary.total += 1
            done = state.get(key)
            if done:
                summary.skipped_ok += 1
            elif done is False and not self.options.retry_errors:
                summary.skipped_failed += 1
        return summary.total - summary.skipped_ok - summary.skipped_failed

    def _check_usage(self, description: ModelDescription) -> None:
        """Match the command line to the model's arguments."""
        predict = description.predict
        if not predict.available:
            raise UsageError(f"model {self.options.model.name!r} has no predict method")
        known = set(predict.arguments)
        types = {p["name"]: p.get("type") for p in predict.parameters_v2}
        self._file_args = set(predict.file_arguments)
        for name, value in self.options.fixed_args:
            if name not in known:
                raise UsageError(
                    f"--arg {name}: model {self.options.model.name!r} has no such "
                    "predict argument (it has: "
                    f"{', '.join(predict.arguments) or 'none'})"
                )
            if name in self._file_args:
                if not os.path.isfile(value):
                    raise UsageError(f"--arg {name}: file {value!r} does not exist")
                self._fixed_files[name] = os.path.abspath(value)
            elif types.get(name) in ("array", "object") and value[:1] in "[{":
                try:
                    self._fixed_json[name] = json.loads(value)
                except ValueError:
                    raise UsageError(
                        f"--arg {name}: {value!r} is not valid JSON"
                    ) from None
            else:
                self._fixed_pairs.append((name, value))
        accept = self.options.accept
        if accept and description.accept and accept not in description.accept:
            raise UsageError(
                f"--accept {accept!r}: model {self.options.model.name!r} answers "
                f"{', '.join(description.accept)}"
            )
        if accept and not description.accept and not _is_json(accept):
            raise UsageError(
                f"--accept {accept!r}: model {self.options.model.name!r} offers no "
                "choice of media type (it has no 'accept' argument)"
            )
        if not isinstance(self.inputs, FileInputs):
            return
        file_arg = self.options.file_arg
        if file_arg is not None:
            if file_arg not in self._file_args:
                raise UsageError(
                    f"--file-arg {file_arg}: not a file argument of model "
                    f"{self.options.model.name!r} (its file arguments: "
                    f"{', '.join(predict.file_arguments) or 'none'})"
                )
        elif len(predict.file_arguments) == 1:
            file_arg = predict.file_arguments[0]
        elif not predict.file_arguments:
            raise UsageError(
                f"model {self.options.model.name!r} takes no file argument; give "
                "its arguments with --input-jsonl FILE instead of input files"
            )
        else:
            raise UsageError(
                f"model {self.options.model.name!r} has several file arguments "
                f"({', '.join(predict.file_arguments)}); choose one with --file-arg"
            )
        if file_arg in dict(self.options.fixed_args):
            raise UsageError(f"--arg {file_arg} is the input file argument itself")
        self._file_arg = file_arg

    def _settle(self, description: ModelDescription) -> None:
        """Join the run recorded in the output folder, or start it.

        Refuses (:class:`UsageError`) a folder that holds another run.  When
        the run turns out to be another than the one whose records were
        counted before the model was loaded, they are counted again.
        """
        options = self.options
        identity = identity_for(
            description,
            fixed_args=options.fixed_args,
            accept=options.accept,
            file_arg=self._file_arg,
            jsonl=not isinstance(self.inputs, FileInputs),
        )
        run_id = settle_run(
            options.output_dir,
            identity,
            restart=options.restart,
            inputs=options.run_inputs,
            count=len(self.inputs),
        )
        if run_id != self._run_id:
            self._run_id = run_id
            self._state = load_state(options.output_dir, run_id)
            self._plan()

    def _upload(self, item: InputItem, name: str, path: str) -> UploadedFile:
        return UploadedFile(
            name=name,
            filename=self._copies.copy(item.key, path),
            content_type=_content_type(path, self._types),
            original_filename=os.path.basename(path),
        )

    # -- one input ------------------------------------------------------------

    def _fixed(self) -> RawArguments:
        """The arguments every input shares (--arg)."""
        return RawArguments(
            pairs=list(self._fixed_pairs), json_body=dict(self._fixed_json) or None
        )

    def _request(self, item: InputItem) -> tuple[Any, ...]:
        """What a worker needs for one input; raises for an unusable input.

        ``("file", copy, media type, original name, fixed file copies)`` for
        an input file, ``("args", raw arguments)`` for a JSON Lines input;
        every file in it is a copy made for this input.
        """
        if item.key in self._copies:  # handed out before: its copies are stale
            self._copies.drop(item.key)
        try:
            return self._make_request(item)
        except BaseException:
            self._copies.drop(item.key)
            raise

    def _make_request(self, item: InputItem) -> tuple[Any, ...]:
        if item.text is None:
            path = item.path
            assert path is not None
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise InputUnreadable(f"input file {path!r} is missing or unreadable")
            copy = self._copies.copy
            others = tuple(
                (name, copy(item.key, fixed), *self._names(fixed))
                for name, fixed in self._fixed_files.items()
            )
            return ("file", copy(item.key, path), *self._names(path), others)
        try:
            line = json.loads(item.text)
        except ValueError as exc:
            raise InputUnreadable(
                f"line {item.line} is not valid JSON: {exc}"
            ) from None
        if not isinstance(line, dict):
            raise InputUnreadable(
                f"line {item.line} is not a JSON object of predict arguments"
            )
        base = os.path.dirname(item.path or "")
        for name in self._file_args & line.keys():
            value = line[name]
            if isinstance(value, str):
                path = os.path.join(base, value)
                if not os.path.isfile(path):
                    raise InputUnreadable(f"{name}: file {value!r} does not exist")
                line[name] = self._upload(item, name, path)
        pairs = [(k, v) for k, v in self._fixed_pairs if k not in line]
        pairs += [
            (name, self._upload(item, name, path))
            for name, path in self._fixed_files.items()
            if name not in line
        ]
        return (
            "args",
            RawArguments(pairs=pairs, json_body={**self._fixed_json, **line}),
        )

    def _names(self, path: str) -> tuple[str, str]:
        """The media type and the original name of an input file."""
        return _content_type(path, self._types), os.path.basename(path)

    def _record(self, item: InputItem, outcome: Any, seconds: float) -> None:
        """Write the record of one finished input."""
        assert self._writer is not None and self._progress is not None
        if isinstance(outcome, WorkerCrashed):  # no call removed its copies
            self._copies.drop(item.key)
        else:
            self._copies.used(item.key)
        run = self._run_id
        ok = isinstance(outcome, PredictOutcome)
        if isinstance(outcome, PredictOutcome):
            if _is_json(outcome.content_type):
                line = ok_record(item.key, seconds, run=run, json_body=outcome.body)
            else:
                name = output_name(item, outcome.content_type)
                write_output_file(self._outputs, name, outcome.body)
                line = ok_record(
                    item.key,
                    seconds,
                    run=run,
                    output_file=f"{OUTPUTS_DIR}/{name}",
                    content_type=outcome.content_type,
                )
            self.summary.ok += 1
        else:
            error = (
                outcome if isinstance(outcome, DeepaasError) else model_error(outcome)
            )
            if isinstance(error, ArgumentsInvalid):
                self._check_fixed_args(error)
            details = error.errors if isinstance(error, ArgumentsInvalid) else None
            trace = error.traceback if isinstance(error, ModelError) else None
            line = error_record(
                item.key,
                seconds,
                type(error).__name__,
                error.message,
                run=run,
                details=details,
                traceback=trace,
            )
            self.summary.failed += 1
            LOG.warning("input %s failed: %s", item.key, error.message)
        self._writer.write(line)
        self._progress.update(ok)

    def _check_fixed_args(self, error: ArgumentsInvalid) -> None:
        """A rejected --arg fails every input alike: that is a usage error."""
        fixed = {name for name, _ in self.options.fixed_args}
        for name, messages in error.errors.items():
            if name in fixed:
                text = (
                    "; ".join(map(str, messages))
                    if isinstance(messages, list)
                    else str(messages)
                )
                raise UsageError(f"--arg {name}: {text}")

    # -- the run -----------------------------------------------------------

    def run(self) -> Summary:
        """Process this shard's inputs; never raises for a failing input."""
        options = self.options
        started = time.monotonic()
        options.output_dir.mkdir(parents=True, exist_ok=True)
        self._outputs.mkdir(exist_ok=True)
        results_path = options.output_dir / results_filename(options.shard)
        self.summary.results_file = str(results_path)
        self._run_id = earlier_run(
            options.output_dir, options.model.name, restart=options.restart
        )
        if self._run_id is not None:
            self._state = load_state(options.output_dir, self._run_id)
        todo = self._plan()
        if todo == 0 and self.summary.total:
            # Done, by the records of the run recorded here: only if this is
            # that run (the model's version decides too).
            description = load_wrapped(options.model).describe()
            self._check_usage(description)
            self._settle(description)
            todo = self._plan()
        LOG.info(
            "%d inputs in shard %s: %d to do, %d done earlier, %d failed earlier%s",
            self.summary.total,
            options.shard,
            todo,
            self.summary.skipped_ok,
            self.summary.skipped_failed,
            "" if options.retry_errors else " (not retried without --retry-errors)",
        )
        if todo == 0:
            self.summary.seconds = time.monotonic() - started
            return self.summary
        previous = {
            s: signal.signal(s, self._on_signal)
            for s in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            with self._copies:
                if options.workers == 0 and not options.worker_envs:
                    self._run_inline()
                else:
                    self._run_pool()
        except _Abort:
            LOG.warning("stopped at once (second signal); records written so far kept")
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self._progress is not None:
                self._progress.close()
            if self._writer is not None:
                self._writer.close()
        if self._signal is not None:
            self.summary.signal_name = signal.Signals(self._signal).name
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._signal is not None:
            raise _Abort()
        self._signal = signum
        LOG.warning(
            "%s received: finishing the inputs in hand, then stopping "
            "(send it again to stop at once)",
            signal.Signals(signum).name,
        )

    def _todo(self) -> Iterator[InputItem]:
        retry = self.options.retry_errors
        state = self._state
        for item in self.inputs.items(self.options.shard):
            done = state.get(item.key)
            if done or (done is False and not retry):
                continue
            yield item

    def _open(self) -> None:
        options = self.options
        todo = (
            self.summary.total - self.summary.skipped_ok - self.summary.skipped_failed
        )
        self._writer = ResultsWriter(
            options.output_dir / results_filename(options.shard)
        )
        self._progress = Progress(
            todo, interval=options.progress_interval, bar=options.progress_bar
        )

    def _run_inline(self) -> None:
        """``--workers 0``: the model runs in this process, one input at a time."""
        options = self.options
        wrapper = load_wrapped(options.model, warm=options.warm)
        description = wrapper.describe()
        self._check_usage(description)
        self._settle(description)
        self._open()
        assert self._progress is not None
        call = PredictCall(
            wrapper, fixed=self._fixed(), file_arg=self._file_arg, accept=options.accept
        )
        clock = time.perf_counter
        for item in self._todo():
            if self._signal is not None:
                break
            begin = clock()
            outcome: Any
            try:
                request = self._request(item)
                if request[0] == "file":
                    outcome = call.file(*request[1:])
                else:
                    outcome = call.raw(request[1])
            except DeepaasError as exc:
                outcome = exc
            self._record(item, outcome, clock() - begin)
            self._progress.tick()
            if options.fail_fast and self.summary.failed:
                self.summary.stopped_early = True
                break

    def _run_pool(self) -> None:
        """``--workers N``: N processes, each fed ahead."""
        options = self.options
        envs = options.worker_envs or [{} for _ in range(options.workers)]
        pool = BatchPool(
            options.model, envs=envs, warm=options.warm, log_level=options.log_level
        )
        description = pool.start()
        try:
            self._check_usage(description)
            self._settle(description)
            pool.setup(self._fixed(), self._file_arg, options.accept)
            self._open()
            self._feed(pool, self._todo())
        finally:
            pool.stopping = True
            pool.stop(grace=2.0)

    def _feed(self, pool: BatchPool, todo: Iterator[InputItem]) -> None:
        assert self._progress is not None
        options = self.options
        exhausted = False
        deadline: float | None = None
        while True:
            stopping = self._signal is not None or self.summary.stopped_early
            if stopping and deadline is None:
                deadline = time.monotonic() + (
                    options.term_grace if self._signal is not None else 1e9
                )
            while not stopping and (pool.requeued or not exhausted) and pool.has_room():
                items: list[InputItem] = []
                requests: list[Any] = []
                kind = "files"
                size = pool.chunk_size()
                while len(items) < size:
                    item = pool.requeued.popleft() if pool.requeued else None
                    if item is None and not exhausted:
                        item = next(todo, None)
                        exhausted = item is None
                    if item is None:
                        break
                    try:
                        request = self._request(item)
                    except InputUnreadable as exc:
                        self._record(item, exc, 0.0)
                        continue
                    kind = "files" if request[0] == "file" else "args"
                    items.append(item)
                    requests.append(request[1:] if kind == "files" else request[1])
                if items and not pool.submit(kind, items, requests):
                    pool.requeued.extendleft(reversed(items))
                    break
            if not pool.in_flight() and (exhausted or stopping) and not pool.requeued:
                return
            if deadline is not None and time.monotonic() > deadline:
                LOG.warning(
                    "%d input(s) in hand abandoned after %g s; they will be "
                    "done on the next run",
                    pool.in_flight(),
                    options.term_grace,
                )
                return
            if not pool.alive:
                raise DeepaasError(
                    f"every worker of model {options.model.name!r} died and could not "
                    "be restarted; see the log above"
                )
            for item, outcome, seconds in pool.collect(0.5):
                self._record(item, outcome, seconds)
                if options.fail_fast and not isinstance(outcome, PredictOutcome):
                    self.summary.stopped_early = True
            self._progress.tick()


__all__ = ["BatchOptions", "BatchRun", "InputUnreadable", "Summary", "UsageError"]
