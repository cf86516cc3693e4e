"""Models whose train() sleeps, fails, logs, starts children or ignores SIGTERM.

``record`` names a directory where each call writes ``<pid>.start`` and
``<pid>.end`` (the time, so that tests can check how many ran at once) and
``child.pid`` when it starts a child process.
"""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from marshmallow import fields

LOG = logging.getLogger("fake.trainer")


def _write(directory, name, text):
    path = Path(directory) / name
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


class Trainer:
    def get_metadata(self):
        return {"name": "trainer", "description": "trains by sleeping"}

    def get_train_args(self):
        return {
            "seconds": fields.Float(load_default=0.0),
            "fail": fields.Bool(load_default=False),
            "child": fields.Bool(load_default=False),
            "stubborn": fields.Bool(load_default=False),
            "talk": fields.Bool(load_default=False),
            "record": fields.Str(load_default=""),
            "data": fields.Raw(required=False, metadata={"type": "file"}),
        }

    def predict(self, **kwargs):
        return {"ok": True}

    def train(self, seconds, fail, child, stubborn, talk, record, data=None):
        pid = os.getpid()
        if record:
            _write(record, f"{pid}.start", repr(time.time()))
        if stubborn:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if child:
            # A stubborn child ignores SIGTERM too (the setting is inherited).
            proc = subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(120)"]
            )
            _write(record, "child.pid", str(proc.pid))
        if talk:
            print("to stdout from print")
            os.write(2, b"to stderr from the file descriptor\n")
            LOG.warning("to the log from logging")
            subprocess.run(["echo", "from a child process"], check=True)
            print("env", os.environ.get("DEEPAAS_TRAINING_UUID"),
                  os.environ.get("FAKE_TRAINING_ENV", "-"))
        if fail:
            raise ValueError("the training diverged")
        time.sleep(seconds)
        result = {"pid": pid, "seconds": seconds}
        if data is not None:
            with open(data.filename, "rb") as handle:
                result["data"] = {
                    "content": handle.read().decode(),
                    "path": data.filename,
                    "name": data.name,
                    "original_filename": data.original_filename,
                }
        if record:
            _write(record, f"{pid}.end", repr(time.time()))
        return result


class Unserializable:
    def predict(self, **kwargs):
        return {}

    def train(self, **kwargs):
        return {"value": object()}


class Printer:
    """Prints many numbered lines, uses its training directory, cleans up.

    ``lines`` lines of 72 bytes go to stdout; ``partial`` leaves a last line
    unfinished; ``record`` names a directory where it writes ``started``
    (then sleeps ``seconds``) and, from its ``finally`` block, ``finally``.
    It writes ``checkpoint`` into ``$DEEPAAS_TRAINING_DIR``.  ``daemon``
    starts a process in a session of its own that prints ``daemon N`` for
    that many seconds, outliving the training (its pid in ``daemon.pid``).
    """

    def get_metadata(self):
        return {"name": "printer", "description": "prints a lot"}

    def get_train_args(self):
        return {
            "lines": fields.Int(load_default=0),
            "partial": fields.Bool(load_default=False),
            "seconds": fields.Float(load_default=0.0),
            "record": fields.Str(load_default=""),
            "daemon": fields.Float(load_default=0.0),
        }

    def predict(self, **kwargs):
        return {}

    def train(self, lines, partial, seconds, record, daemon):
        job_dir = os.environ["DEEPAAS_TRAINING_DIR"]
        Path(job_dir, "checkpoint").write_text(os.environ["DEEPAAS_TRAINING_UUID"])
        try:
            for number in range(lines):
                print(printed_line(number), end="")
            if partial:
                print("progress 50%", end="", flush=True)
            if daemon:
                loop = (f"import time\nfor n in range({int(daemon * 10)}):\n"
                        "    print('daemon', n, flush=True)\n    time.sleep(0.1)\n")
                proc = subprocess.Popen([sys.executable, "-c", loop],
                                        start_new_session=True)
                _write(record, "daemon.pid", str(proc.pid))
            if record:
                _write(record, "started", str(os.getpid()))
            time.sleep(seconds)
        finally:
            if record:
                _write(record, "finally", "ran")
        return {"lines": lines, "dir": job_dir}


def printed_line(number):
    """The ``number``-th line Printer prints (72 bytes with its newline)."""
    return f"line {number:07d} " + "x" * 58 + "\n"
