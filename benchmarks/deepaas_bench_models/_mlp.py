"""A fixed-seed torch MLP built once per process, one CPU thread.

It computes on the CPU, or with ``on_device`` on the device deepaas placed
the worker on (``deepaas.torch_device()``: ``cuda:0`` on a GPU worker), as
the GPU check's models do.
"""

from __future__ import annotations

import threading

import torch

INPUTS = 784
OUTPUTS = 10

torch.set_num_threads(1)


class MLP:
    """784-hidden-hidden-10 perceptron, built lazily (in ``warm``)."""

    def __init__(self, hidden: int, *, on_device: bool = False) -> None:
        self.hidden = hidden
        self.on_device = on_device
        self._device: torch.device | None = None
        self._net: torch.nn.Module | None = None
        self._lock = threading.Lock()

    @property
    def net(self) -> torch.nn.Module:
        if self._net is None:
            with self._lock:
                if self._net is None:
                    torch.manual_seed(0)
                    self._device = torch.device("cpu")
                    if self.on_device:
                        # Asked in the worker, after deepaas placed it.
                        import deepaas

                        self._device = deepaas.torch_device()
                    self._net = torch.nn.Sequential(
                        torch.nn.Linear(INPUTS, self.hidden),
                        torch.nn.ReLU(),
                        torch.nn.Linear(self.hidden, self.hidden),
                        torch.nn.ReLU(),
                        torch.nn.Linear(self.hidden, OUTPUTS),
                    ).to(self._device).eval()
        return self._net

    def warm(self) -> None:
        self.predict_many([[0.0] * INPUTS])

    def predict_many(self, rows: list[list[float]]) -> list[list[float]]:
        with torch.inference_mode():
            net = self.net
            inputs = torch.tensor(rows, dtype=torch.float32, device=self._device)
            logits = net(inputs)
        return [[round(v, 5) for v in row] for row in logits.tolist()]

    def predict(self, row: list[float]) -> list[float]:
        return self.predict_many([row])[0]
