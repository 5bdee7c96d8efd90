"""Models of the built-in train function."""

from __future__ import annotations

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def mlp(
    num_features: int,
    num_classes: int,
    hidden: int,
    depth: int,
    activation: str = "relu",
    dropout: float = 0.0,
) -> nn.Sequential:
    """`depth` hidden layers of width `hidden`, dropout after each activation, never after the
    output layer."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = num_features
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
