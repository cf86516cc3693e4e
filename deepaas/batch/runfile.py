"""``run.json``: what defines a run, so that resuming never mixes two runs.

A run is one model (name and version) called with one set of ``--arg``
values, one answer media type and one file argument over a list of inputs.
Its first task records that in ``OUTPUT_DIR/run.json`` with a run id, and
every record carries that id.  A later command into the same folder
resumes only when it defines the same run; one that differs is refused,
naming the difference, unless ``--restart`` asks for a new run (the old
records stay in the files but no longer count).  Records of another run are
never counted as done, and merge takes only the recorded run's.  A
recorded run without a single record (its command was refused, e.g. for a
bad ``--arg`` value, before any input was done) is simply replaced.

Tasks of one job array start together and agree without talking to each
other: the id of a run is a digest of what defines it, so every task
computes the same one and writes the same ``run.json``.  A restart adds a
token to the digest: the job-array id inside SLURM (every task of the array
restarts into the same new run, and a requeued task joins it), else a
random one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deepaas.batch.options import UsageError
from deepaas.batch.results import RUN_FILE, results_files, write_json_atomically
from deepaas.model.description import ModelDescription

LOG = logging.getLogger("deepaas.predict")

JSON_MEDIA_TYPE = "application/json"


@dataclasses.dataclass(frozen=True)
class RunIdentity:
    """What defines a run: the same identity, the same results."""

    model: str
    version: str | None
    #: ``--arg`` values by name, in the order given (file paths absolute).
    args: dict[str, list[str]]
    #: The media type of the answers (``--accept`` or the model's default).
    accept: str
    #: The file argument that receives each input (None for JSON Lines).
    file_arg: str | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunIdentity | None:
        """The identity recorded in a ``run.json``; None when it has none."""
        try:
            return cls(
                model=data["model"],
                version=data["version"],
                args={k: list(v) for k, v in data["args"].items()},
                accept=data["accept"],
                file_arg=data["file_arg"],
            )
        except (KeyError, TypeError, AttributeError):
            return None

    def run_id(self, token: str = "") -> str:
        """The id of this run: a digest of the identity (and a restart token)."""
        text = json.dumps([self.to_json(), token], sort_keys=True)
        return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:12]

    def differences(self, recorded: RunIdentity) -> list[str]:
        """How this run differs from ``recorded``, in the user's words."""
        found = []
        if self.model != recorded.model:
            found.append(f"the model was {recorded.model!r}, now {self.model!r}")
        elif self.version != recorded.version:
            found.append(
                f"model version was {recorded.version!r}, now {self.version!r}"
            )
        for name in sorted(self.args.keys() | recorded.args.keys()):
            before, now = recorded.args.get(name), self.args.get(name)
            if before != now:
                found.append(f"--arg {name} was {_values(before)}, now {_values(now)}")
        if self.accept != recorded.accept:
            found.append(
                f"the media type (--accept) was {recorded.accept!r}, now "
                f"{self.accept!r}"
            )
        if self.file_arg != recorded.file_arg:
            found.append(
                f"the file argument (--file-arg) was {recorded.file_arg!r}, now "
                f"{self.file_arg!r}"
            )
        return found


def _values(values: list[str] | None) -> str:
    if values is None:
        return "not given"
    return ", ".join(values)


def identity_for(
    description: ModelDescription,
    *,
    fixed_args: Sequence[tuple[str, str]],
    accept: str | None,
    file_arg: str | None,
    jsonl: bool,
) -> RunIdentity:
    """The identity of a run of ``description``'s model with these options.

    Defaults are resolved as the run resolves them (the model's first media
    type, its only file argument), so that spelling a default out does not
    make another run.
    """
    file_args = description.predict.file_arguments
    args: dict[str, list[str]] = {}
    for name, value in fixed_args:
        if name in file_args:
            value = os.path.abspath(value)
        args.setdefault(name, []).append(value)
    if jsonl:
        chosen_file_arg = None
    elif file_arg is None and len(file_args) == 1:
        chosen_file_arg = file_args[0]
    else:
        chosen_file_arg = file_arg
    version = description.metadata.get("version")
    return RunIdentity(
        model=description.name,
        version=None if version is None else str(version),
        args=args,
        accept=accept or (description.accept or [JSON_MEDIA_TYPE])[0],
        file_arg=chosen_file_arg,
    )


def restart_token(environ: Mapping[str, str] | None = None) -> str:
    """What makes a restarted run new: shared by the tasks of one job array."""
    env = os.environ if environ is None else environ
    job = env.get("SLURM_ARRAY_JOB_ID")
    if job:
        return f"slurm-array-{job}"
    return uuid.uuid4().hex


def read_run_file(output_dir: Path) -> dict[str, Any] | None:
    """The content of ``run.json``; None when there is none."""
    path = output_dir / RUN_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"cannot read {path}: {exc}; repair or remove it, or give --restart"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a run description; remove it or --restart")
    return data


def earlier_run(output_dir: Path, model: str, *, restart: str | None) -> str | None:
    """Before the model is loaded: the id of the run to resume, if any.

    Refuses at once a model other than the recorded one (without
    ``--restart``); the rest of the identity is checked by
    :func:`settle_run` once the model is loaded.
    """
    recorded = read_run_file(output_dir)
    if not recorded or "run" not in recorded:
        return None
    if restart is not None and recorded.get("restart") != restart:
        return None
    if recorded.get("model") != model:
        if restart is None and has_records(output_dir, str(recorded["run"])):
            difference = f"the model was {recorded.get('model')!r}, now {model!r}"
            raise UsageError(_refusal(output_dir, [difference]))
        return None
    return str(recorded["run"])


def check_run(output_dir: Path, identity: RunIdentity) -> None:
    """Refuse (:class:`UsageError`) a folder that holds another run's records."""
    recorded = read_run_file(output_dir)
    known = RunIdentity.from_json(recorded) if recorded else None
    if recorded is None or known is None or known == identity:
        return
    if has_records(output_dir, str(recorded.get("run"))):
        raise UsageError(_refusal(output_dir, identity.differences(known)))


def has_records(output_dir: Path, run_id: str) -> bool:
    """Whether any results file of ``output_dir`` holds a record of ``run_id``."""
    needle = f'"run": "{run_id}"'.encode()
    for path in results_files(output_dir):
        with open(path, "rb") as handle:
            tail = b""
            while chunk := handle.read(1 << 20):
                if needle in tail + chunk:
                    return True
                tail = chunk[-len(needle) :]
    return False


def settle_run(
    output_dir: Path,
    identity: RunIdentity,
    *,
    restart: str | None,
    inputs: Mapping[str, Any] | None,
    count: int,
) -> str:
    """Join the run recorded in ``output_dir`` or start one; return its id.

    Raises :class:`UsageError` when the folder holds another run and
    ``restart`` is None; ``run.json`` is then left as it was.
    """
    recorded = read_run_file(output_dir)
    known = RunIdentity.from_json(recorded) if recorded else None
    token = (recorded or {}).get("restart")
    if restart is not None and not (token == restart and known == identity):
        run_id, token = identity.run_id(restart), restart
        LOG.info("starting a new run %s in %s (--restart)", run_id, output_dir)
    elif known is None or recorded is None or "run" not in recorded:
        if recorded is not None:
            LOG.warning(
                "%s was written by an older deepaas-predict: the records in this "
                "folder are not counted and their inputs are done again",
                output_dir / RUN_FILE,
            )
        run_id, token = identity.run_id(), None
    elif known == identity:
        run_id = str(recorded["run"])
    else:
        check_run(output_dir, identity)
        # The recorded run did nothing: this one takes its place.
        run_id, token = identity.run_id(), None
    content: dict[str, Any] = {"run": run_id, **identity.to_json()}
    if token is not None:
        content["restart"] = token
    content["inputs"] = inputs if inputs is not None else (recorded or {}).get("inputs")
    content["count"] = count
    if content != recorded:
        write_json_atomically(output_dir / RUN_FILE, content)
    return run_id


def _refusal(output_dir: Path, differences: list[str]) -> str:
    return (
        f"{output_dir} holds the results of another run ({'; '.join(differences)}): "
        "give the same options to resume it, another --output-dir, or --restart "
        "to start a new run there"
    )


__all__ = [
    "RunIdentity",
    "check_run",
    "earlier_run",
    "has_records",
    "identity_for",
    "read_run_file",
    "restart_token",
    "settle_run",
]
