"""A real torch model that asks for a GPU (used by the gpu-marked test)."""

import os

import deepaas


class TorchOnGpu:
    resources = {"gpus": 1}

    def warm(self):
        import torch

        self.device = deepaas.torch_device()
        self.net = torch.nn.Linear(8, 2).to(self.device)

    def predict(self, **kwargs):
        import torch

        with torch.no_grad():
            out = self.net(torch.ones(1, 8, device=self.device))
        return {
            "tensor_device": str(out.device),
            "helper": deepaas.device(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "device_count": torch.cuda.device_count(),
        }
