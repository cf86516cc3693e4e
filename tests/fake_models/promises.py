"""Models that make documented behaviours observable from outside.

``WarmRecorder`` says whether ``warm()`` ran in the process that answers
(and appends that process's id to ``$DEEPAAS_TEST_WARM_FILE``);
``Gate`` holds a call until a file exists, so that a test knows a request
is in flight without guessing how long to sleep; ``ThreadPeak`` reports
how many of its calls ran at the same time; ``StartedMarker`` (a batch
model) writes down each input it starts; ``GpuPlaced`` needs a GPU and
says where it was placed.
"""

import os
import threading
import time

from marshmallow import fields


class WarmRecorder:
    def __init__(self):
        self.warmed = False

    def warm(self):
        self.warmed = True
        path = os.environ.get("DEEPAAS_TEST_WARM_FILE")
        if path:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(f"{os.getpid()}\n")

    def predict(self, **kwargs):
        return {"warmed": self.warmed, "pid": os.getpid()}


class Gate:
    """predict waits until the file ``gate`` exists (at most 60 s)."""

    def get_predict_args(self):
        return {"gate": fields.Str(required=True)}

    def predict(self, gate):
        deadline = time.monotonic() + 60
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"pid": os.getpid(), "opened": os.path.exists(gate)}


class ThreadPeak:
    """A thread-safe model: each call lasts 0.3 s and sees how many overlap."""

    deepaas_execution = "thread"

    def __init__(self):
        self._lock = threading.Lock()
        self._running = 0
        self._peak = 0

    def predict(self, **kwargs):
        with self._lock:
            self._running += 1
            self._peak = max(self._peak, self._running)
        time.sleep(0.3)
        with self._lock:
            self._running -= 1
            return {"peak": self._peak, "thread": threading.current_thread().name}


class StartedMarker:
    """A batch model that says when it starts an input, then does as told.

    Appends ``<input name> <pid>`` to ``$DEEPAAS_TEST_STARTED_FILE`` before
    it reads the input; an input ``sleep S`` then sleeps S seconds.
    """

    def get_predict_args(self):
        return {"data": fields.Raw(required=True, metadata={"type": "file"})}

    def predict(self, data):
        with open(os.environ["DEEPAAS_TEST_STARTED_FILE"], "a") as handle:
            handle.write(f"{data.original_filename} {os.getpid()}\n")
        with open(data.filename, encoding="utf-8") as handle:
            text = handle.read()
        if text.startswith("sleep"):
            time.sleep(float(text.split()[1]))
        return {"name": data.original_filename}


class GpuPlaced:
    """A batch model that needs one GPU and says where it was placed."""

    resources = {"gpus": 1}

    def get_predict_args(self):
        return {"data": fields.Raw(required=True, metadata={"type": "file"})}

    def predict(self, data):
        import deepaas

        return {
            "name": data.original_filename,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "slurm_gpus_on_node": os.environ.get("SLURM_GPUS_ON_NODE"),
            "device": deepaas.device(),
        }
