"""Models of the built-in train function.

Batch norm goes between the linear (or conv) layer and its activation, and then the layer's
bias is dropped: the norm's shift makes it redundant. Dropout follows activations, never the
output layer. ``init``: ``kaiming`` (for ReLU-like activations), ``xavier`` (for tanh), or
``default`` (PyTorch's).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "tanh": nn.Tanh}

_masks: Iterator[Tensor] | None = None


@contextlib.contextmanager
def dropout_masks(masks: Iterator[Tensor]) -> Iterator[None]:
    """Make the `Dropout` layers of a forward pass take their masks (0 where an element is
    dropped, 1 / (1 - p) where it is kept) from `masks`, in layer order, instead of drawing
    them. The train loop draws every mask from the trial's own generator, so that a trial
    trains the same alone or in a population."""
    global _masks
    previous, _masks = _masks, masks
    try:
        yield
    finally:
        _masks = previous


class Dropout(nn.Dropout):
    """nn.Dropout whose masks the train loop supplies (`dropout_masks`); without them, as
    nn.Dropout."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        if _masks is None:
            return F.dropout(x, self.p, True)
        return x * next(_masks).to(x.dtype)  # under autocast, x may be bf16


def _block(layer: nn.Module, norm: nn.Module | None, activation: str, dropout: float) -> list:
    out = [layer] + ([norm] if norm is not None else []) + [ACTIVATIONS[activation]()]
    return out + ([Dropout(dropout)] if dropout > 0 else [])


def mlp(num_features: int, num_classes: int, hp: dict[str, Any]) -> nn.Sequential:
    """`depth` hidden layers of width `hidden`."""
    bn, width = bool(hp["batch_norm"]), int(hp["hidden"])
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = num_features
    for _ in range(int(hp["depth"])):
        layers += _block(
            nn.Linear(fan_in, width, bias=not bn),
            nn.BatchNorm1d(width) if bn else None,
            hp["activation"],
            float(hp["dropout"]),
        )
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers)


def cnn(shape: tuple[int, ...], num_classes: int, hp: dict[str, Any]) -> nn.Sequential:
    """`depth` conv blocks of `channels` channels (1-D for sequences, 2-D for images), each
    followed by pooling that halves the length while it is more than 4, then global average
    pooling and a linear classifier."""
    conv, norm, pools = (
        (nn.Conv1d, nn.BatchNorm1d, {"max": nn.MaxPool1d, "avg": nn.AvgPool1d})
        if len(shape) == 1
        else (nn.Conv2d, nn.BatchNorm2d, {"max": nn.MaxPool2d, "avg": nn.AvgPool2d})
    )
    bn, channels, k = bool(hp["batch_norm"]), int(hp["channels"]), int(hp["kernel_size"])
    layers: list[nn.Module] = [nn.Unflatten(1, (1, *shape))]
    c_in, size = 1, min(shape)
    for _ in range(int(hp["depth"])):
        layers += _block(
            conv(c_in, channels, k, padding=k // 2, bias=not bn),
            norm(channels) if bn else None,
            hp["activation"],
            0.0,
        )
        if hp["pool"] != "none" and size > 4:
            layers.append(pools[hp["pool"]](2))
            size //= 2
        c_in = channels
    pool = nn.AdaptiveAvgPool1d(1) if len(shape) == 1 else nn.AdaptiveAvgPool2d(1)
    layers += [pool, nn.Flatten()]
    if float(hp["dropout"]) > 0:
        layers.append(Dropout(float(hp["dropout"])))
    layers.append(nn.Linear(c_in, num_classes))
    return nn.Sequential(*layers)


def initialize(model: nn.Module, init: str, activation: str) -> None:
    if init == "default":
        return
    gain_name = "relu" if activation in ("relu", "gelu") else activation
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            if init == "kaiming":
                nonlinearity = "leaky_relu" if activation == "leaky_relu" else "relu"
                nn.init.kaiming_normal_(m.weight, nonlinearity=nonlinearity)
            else:
                nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain(gain_name))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build(name: str, shape: tuple[int, ...], num_classes: int, hp: dict[str, Any]) -> nn.Module:
    if name == "mlp":
        model = mlp(math.prod(shape), num_classes, hp)
    elif name == "cnn":
        model = cnn(shape, num_classes, hp)
    else:
        raise ValueError(f"unknown model {name!r}")
    initialize(model, hp["init"], hp["activation"])
    return model
