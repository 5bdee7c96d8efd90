"""The input standardization of an exported model, as a torch module (imported only by
`load_model`, so that ``caviar.analysis`` itself does not import torch)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Standardize(nn.Module):
    """``(x - mean) / std`` per feature, with the training split's statistics: what the
    built-in train function did to every input before the network saw it.

    ``mean`` and ``std`` hold one value per feature (the example's shape flattened); inputs
    are (n, *shape) or (n, features), of any numeric dtype, and come out float32 in their own
    shape."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Tensor, std: Tensor):
        super().__init__()
        # Buffers: saved in the state dict and moved by .to(device), never trained.
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).flatten())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).flatten())

    def forward(self, x: Tensor) -> Tensor:
        flat = torch.as_tensor(x).flatten(1).to(self.mean.dtype)
        return ((flat - self.mean) / self.std).reshape(x.shape)
