"""The batch engine: inputs in, one record per input out, resumable.

A run reads what earlier runs recorded in the output folder, skips the
inputs already done, starts the model (in this process with ``workers=0``,
else in worker processes fed ahead by :class:`~deepaas.batch.pool.BatchPool`)
and records every answer as soon as it arrives.  SIGTERM or SIGINT stop
handing out inputs; the inputs in hand get ``term_grace`` seconds to finish,
then the workers are stopped and every record written so far is flushed, so
that rerunning the same command resumes where this one stopped.

An input whose GPU failed (:class:`~deepaas.exceptions.GpuContextLost`) is
recorded as failed; a worker process that saw it is replaced by the pool,
but with ``workers=0`` the failing process is this one, whose every later
call would fail: the run stops there with a one-line error, and rerunning
resumes (in a fresh process, with a fresh GPU context).

The model never gets a user's own file, only copies
(:mod:`~deepaas.batch.copies`).  A run resumes only its own records: what
defines it is checked against ``run.json`` (:mod:`~deepaas.batch.runfile`)
before anything is recorded.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

from deepaas.batch.arguments import CallArguments, is_json
from deepaas.batch.calls import PredictCall
from deepaas.batch.copies import InputCopies, InputUnreadable, digests_of
from deepaas.batch.inputs import FileInputs, InputItem, Inputs
from deepaas.batch.options import BatchOptions, Summary, UsageError
from deepaas.batch.pool import BatchPool
from deepaas.batch.progress import Progress
from deepaas.batch.provenance import devices_of, input_digests, write_run_record
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
    GpuContextLost,
    GpuOutOfMemory,
    ModelError,
)
from deepaas.model.description import ModelDescription
from deepaas.model.gpu_faults import PROCESS_MUST_RESTART, gpu_fault, restated
from deepaas.model.gpu_memory import recover_from_out_of_memory
from deepaas.model.wrapper import (
    PredictOutcome,
    load_wrapped,
    model_error,
)

LOG = logging.getLogger("deepaas.predict")


class _Abort(BaseException):
    """A second SIGINT/SIGTERM: stop now, even inside a model call."""


class BatchRun:
    """One task of a batch: the inputs of one shard, recorded in one file."""

    def __init__(self, options: BatchOptions, inputs: Inputs) -> None:
        self.options = options
        self.inputs = inputs
        self.summary = Summary()
        self._outputs = options.output_dir / OUTPUTS_DIR
        self._signal: int | None = None
        self._writer: ResultsWriter | None = None
        self._progress: Progress | None = None
        self._copies = InputCopies()
        self._args = CallArguments(options, inputs, self._copies)
        #: The id of the run this task belongs to (None until known).
        self._run_id: str | None = None
        #: What the run did so far: input key -> done (True) or failed.
        self._state: dict[str, bool] = {}
        #: Input key -> SHA-256s of its files and answer, until recorded.
        self._digests: dict[str, dict[str, Any]] = {}
        self._started = time.time()

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
            file_arg=self._args.file_arg,
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

    # -- one input ------------------------------------------------------------

    def _record(self, item: InputItem, outcome: Any, seconds: float) -> None:
        """Write the record of one finished input."""
        assert self._writer is not None and self._progress is not None
        self._copies.drop(item.key)
        run = self._run_id
        ok = isinstance(outcome, PredictOutcome)
        sha256 = input_digests(item, self._digests.pop(item.key, None), outcome)
        if isinstance(outcome, PredictOutcome):
            if is_json(outcome.content_type):
                line = ok_record(
                    item.key, seconds, run=run, json_body=outcome.body, sha256=sha256
                )
            else:
                name = output_name(item, outcome.content_type)
                write_output_file(self._outputs, name, outcome.body)
                line = ok_record(
                    item.key,
                    seconds,
                    run=run,
                    output_file=f"{OUTPUTS_DIR}/{name}",
                    content_type=outcome.content_type,
                    sha256=sha256,
                )
            self.summary.ok += 1
        else:
            error = (
                outcome if isinstance(outcome, DeepaasError) else model_error(outcome)
            )
            if isinstance(error, ArgumentsInvalid):
                self._args.check_rejected(error)
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
                sha256=sha256,
            )
            self.summary.failed += 1
            LOG.warning("input %s failed: %s", item.key, error.message)
        self._writer.write(line)
        self._progress.update(ok)

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
            self._args.check(description)
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
            self._write_provenance()
        if self._signal is not None:
            self.summary.signal_name = signal.Signals(self._signal).name
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def _write_provenance(self) -> None:
        """Rewrite the run's provenance record with what this task recorded."""
        if self._run_id is None:
            return
        options = self.options
        try:
            write_run_record(
                options.output_dir,
                spec=options.model,
                started=self._started,
                devices=devices_of(options.worker_envs),
            )
        except (OSError, ValueError) as exc:
            LOG.error("cannot write the run's provenance record: %s", exc)

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
        self._args.check(description)
        self._settle(description)
        self._open()
        assert self._progress is not None
        call = PredictCall(
            wrapper,
            fixed=self._args.fixed(),
            file_arg=self._args.file_arg,
            accept=options.accept,
        )
        clock = time.perf_counter
        for item in self._todo():
            if self._signal is not None:
                break
            begin = clock()
            outcome: Any
            try:
                request = self._args.request(item)
                self._digests[item.key] = digests_of(self._copies.of(item.key))
                if request[0] == "file":
                    outcome = call.file(*request[1:])
                else:
                    outcome = call.raw(request[1])
            except DeepaasError as exc:
                outcome = exc
            if isinstance(outcome, GpuContextLost):
                message = restated(outcome.message, PROCESS_MUST_RESTART)
                outcome = GpuContextLost(message, traceback=outcome.traceback)
            self._record(item, outcome, clock() - begin)
            self._progress.tick()
            if isinstance(outcome, GpuContextLost):
                raise DeepaasError(
                    f"the GPU failed ({gpu_fault(outcome.message) or 'CUDA fault'}) "
                    f"on input {item.key}, and this process cannot use it any "
                    "more: the run stops here; rerun the same command to resume "
                    "(the records written so far are kept; --retry-errors "
                    "retries the failed input)"
                )
            if isinstance(outcome, GpuOutOfMemory):
                outcome = None  # its traceback's frames hold the model's tensors
                recover_from_out_of_memory(wrapper.name, "predict")
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
        self._digests = pool.digests
        try:
            self._args.check(description)
            self._settle(description)
            pool.setup(self._args.fixed(), self._args.file_arg, options.accept)
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
            while not stopping and (pool.requeued or not exhausted):
                room = pool.room()
                if room is None:
                    break
                items: list[InputItem] = []
                requests: list[Any] = []
                copies: list[list[tuple[str, str]]] = []
                kind = "files"
                size = min(pool.chunk_size(), room.inputs)
                held = 0
                while len(items) < size and (
                    len(items) < room.any_size or held < room.bytes
                ):
                    item = pool.requeued.popleft() if pool.requeued else None
                    if item is None and not exhausted:
                        item = next(todo, None)
                        exhausted = item is None
                    if item is None:
                        break
                    try:
                        request = self._args.request(item)
                    except InputUnreadable as exc:
                        self._record(item, exc, 0.0)
                        continue
                    kind = "files" if request[0] == "file" else "args"
                    items.append(item)
                    requests.append(request[1:] if kind == "files" else request[1])
                    copies.append(self._copies.of(item.key))
                    held += self._copies.size(item.key)
                if items and not pool.submit(
                    kind, items, requests, copies=copies, size=held
                ):
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
