"""A fixed-seed torch MLP built once per process, on the CPU, one thread."""

from __future__ import annotations

import threading

import torch

INPUTS = 784
OUTPUTS = 10

torch.set_num_threads(1)


class MLP:
    """784-hidden-hidden-10 perceptron, built lazily (in ``warm``)."""

    def __init__(self, hidden: int) -> None:
        self.hidden = hidden
        self._net: torch.nn.Module | None = None
        self._lock = threading.Lock()

    @property
    def net(self) -> torch.nn.Module:
        if self._net is None:
            with self._lock:
                if self._net is None:
                    torch.manual_seed(0)
                    self._net = torch.nn.Sequential(
                        torch.nn.Linear(INPUTS, self.hidden),
                        torch.nn.ReLU(),
                        torch.nn.Linear(self.hidden, self.hidden),
                        torch.nn.ReLU(),
                        torch.nn.Linear(self.hidden, OUTPUTS),
                    ).eval()
        return self._net

    def warm(self) -> None:
        self.predict_many([[0.0] * INPUTS])

    def predict_many(self, rows: list[list[float]]) -> list[list[float]]:
        with torch.inference_mode():
            logits = self.net(torch.tensor(rows, dtype=torch.float32))
        return [[round(v, 5) for v in row] for row in logits.tolist()]

    def predict(self, row: list[float]) -> list[float]:
        return self.predict_many([row])[0]
