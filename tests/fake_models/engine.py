"""Models for the execution engine: crashes, slow warm-up, batching, devices."""

import asyncio
import os
import time

from marshmallow import fields


class Crashy:
    """Dies in the ways real models die: exit, SIGKILL, segfault, hang."""

    def get_predict_args(self):
        return {"how": fields.Str(load_default="ok"),
                "seconds": fields.Float(load_default=0.0),
                "tag": fields.Str(load_default="")}

    def predict(self, how, seconds, tag=""):
        if how == "exit":
            os._exit(3)
        if how == "kill":
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        if how == "segfault":
            import ctypes

            ctypes.string_at(0)
        if how == "sleep":
            time.sleep(seconds)
        return {"pid": os.getpid(), "tag": tag}


class SlowWarm:
    """warm() takes a while (DEEPAAS_TEST_WARM_SECONDS, default 1 s)."""

    def warm(self):
        time.sleep(float(os.environ.get("DEEPAAS_TEST_WARM_SECONDS", "1")))

    def predict(self, **kwargs):
        return {"pid": os.getpid()}


class WarmFails:
    """warm() raises: start-up must fail with the reason."""

    def warm(self):
        raise RuntimeError("weights not found")

    def predict(self, **kwargs):
        return "never"


class Batched:
    """predict_batch answers each request with the size of its batch.

    ``value == "boom"`` fails only that request (an exception in the list);
    ``n`` must be an integer, so a bad ``n`` fails only its request with 422.
    """

    max_batch_size = 4
    batch_timeout = 2.0

    def get_predict_args(self):
        return {"value": fields.Str(load_default="x"), "n": fields.Int(load_default=0)}

    def predict(self, value, n):
        return {"value": value, "batch": 1}

    def predict_batch(self, requests):
        size = len(requests)
        time.sleep(0.05)
        return [
            ValueError(f"bad value {r['value']!r}") if r["value"] == "boom"
            else {"value": r["value"], "n": r["n"], "batch": size}
            for r in requests
        ]


class ThreadEcho:
    """A thread-safe echo that asks to run in the API process."""

    deepaas_execution = "thread"

    def get_predict_args(self):
        return {"value": fields.Str(load_default="hi")}

    def predict(self, value):
        return {"value": value, "pid": os.getpid()}


class AsyncEcho:
    """A trivial echo that asks to run on the event loop."""

    deepaas_execution = "async"

    def get_predict_args(self):
        return {"value": fields.Str(load_default="hi")}

    def predict(self, value):
        return {"value": value, "pid": os.getpid()}


class AsyncSleeper:
    """A coroutine predict: many run at once on one event loop."""

    deepaas_execution = "async"

    async def predict(self, **kwargs):
        await asyncio.sleep(0.2)
        return {"pid": os.getpid()}


class _Placed:
    def predict(self, **kwargs):
        import deepaas

        return {
            "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "device": deepaas.device(),
        }

    def train(self, **kwargs):
        return {}


class NeedsGpu(_Placed):
    resources = {"gpus": 1}


class PrefersGpu(_Placed):
    resources = {"gpus": 1, "gpu": "preferred"}


class TwoGpus(_Placed):
    resources = {"gpus": 2}


class MetadataGpu(_Placed):
    """Declares its needs through metadata, as published models can."""

    def get_metadata(self):
        return {"name": "metadata-gpu", "resources": {"gpu": "required"}}


class CpuOnly(_Placed):
    resources = {"gpus": 0}


class BadResources(_Placed):
    resources = {"gpus": "many"}


class FailsOnRestart(Crashy):
    """Starts once; later starts fail while the file DEEPAAS_TEST_FAIL_FILE exists."""

    def warm(self):
        marker = os.environ.get("DEEPAAS_TEST_FAIL_FILE", "")
        if marker and os.path.exists(marker):
            raise RuntimeError("the weights went missing")


class ModuleCensus:
    """Says which of the server's own modules its worker process imported."""

    def get_predict_args(self):
        return {}

    def predict(self):
        import sys

        return {
            "deepaas.cmd.run": "deepaas.cmd.run" in sys.modules,
            "aiohttp.web": "aiohttp.web" in sys.modules,
        }
