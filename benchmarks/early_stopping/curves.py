"""Learning curves to replay: the bank's real ones and two synthetic families.

A `Curves` maps any configuration of its space to a curve (the metric at epochs 1..max_epochs):
the bank's nearest configuration's (numeric parameters on their searched scale, in the unit
cube; a different choice counts as half the cube's side), or a formula for the synthetic
families. Replay train functions (`replay.py`) play these curves epoch by epoch.

The synthetic families, on a space of three uniform parameters (their value means nothing
beyond the formula):

- ``disagree``: early and final rankings disagree by construction. A configuration's final
  accuracy is q(x); its time constant grows with q, so the best configurations start slowest
  and fast starters plateau low (as a high learning rate, no weight decay and no dropout do).
- ``agree``: every configuration learns at the same pace, so the ranking at epoch 1 is the
  final one up to noise: where plain ASHA is right.

Both add evaluation noise (a fixed draw per configuration and epoch) of standard deviation 0.01.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.early_stopping.bank import MAX_EPOCHS, TASKS, bank_path
from caviar.space import Numeric

SYNTHETIC = ("disagree", "agree")
SYNTHETIC_SPACE = {f"x{i}": {"uniform": [0.0, 1.0]} for i in range(3)}
NOISE = 0.01


def space_of(family: str) -> dict[str, Any]:
    return SYNTHETIC_SPACE if family in SYNTHETIC else TASKS[family]["space"]


class Curves:
    def __init__(self, family: str):
        from caviar.spec import parse_spec

        self.family = family
        spec = parse_spec(
            {
                "name": family,
                "metric": "val_acc",
                "mode": "max",
                "train": {"function": "m:f", "max_epochs": MAX_EPOCHS},
                "space": space_of(family),
            }
        )
        self.space = spec.space
        if family not in SYNTHETIC:
            self._load_bank(bank_path(family))

    def _load_bank(self, path: Path) -> None:
        import pandas as pd

        bank = pd.read_parquet(path)
        wide = bank.pivot(index="config_id", columns="epoch", values="val_acc")
        # A diverged curve ends early: it stays at chance from there (what a user would see).
        self.curves = wide.ffill(axis=1).fillna(0.0).to_numpy()
        configs = bank.groupby("config_id").first()
        self.numeric = [n for n, d in self.space if isinstance(d, Numeric)]
        self.choices = [n for n, d in self.space if not isinstance(d, Numeric)]
        self.units = np.array(
            [
                [self.space.domain(n).to_unit(configs.loc[i, f"param_{n}"]) for n in self.numeric]
                for i in wide.index
            ]
        )
        self.labels = np.array(
            [[str(configs.loc[i, f"param_{n}"]) for n in self.choices] for i in wide.index]
        )

    def nearest(self, config: dict[str, Any], exclude: Collection[int] = ()) -> int:
        """The row of the bank's configuration nearest to `config` (other than `exclude`'s)."""
        u = np.array([self.space.domain(n).to_unit(config[n]) for n in self.numeric])
        d = ((self.units - u) ** 2).sum(axis=1)
        labels = np.array([str(config[n]) for n in self.choices])
        d += 0.25 * (self.labels != labels).sum(axis=1)
        d[list(exclude)] = np.inf
        return int(np.argmin(d))

    def curve(self, config: dict[str, Any]) -> np.ndarray:
        """The metric at epochs 1..max_epochs."""
        if self.family not in SYNTHETIC:
            return self.curves[self.nearest(config)]
        return synthetic_curve(self.family, tuple(float(config[f"x{i}"]) for i in range(3)))

    def final(self, config: dict[str, Any]) -> float:
        """The metric at max_epochs: what retraining this configuration gives."""
        return float(self.curve(config)[-1])


@functools.lru_cache(maxsize=100_000)
def synthetic_curve(family: str, x: tuple[float, ...]) -> np.ndarray:
    q = 0.55 + 0.4 * math.exp(-8 * ((x[0] - 0.7) ** 2 + (x[1] - 0.3) ** 2)) + 0.03 * x[2]
    epochs = np.arange(1, MAX_EPOCHS + 1)
    # disagree: time constants from 1 epoch (the worst) to 12 (the best); agree: all 3.
    tau = 1 + 11 * (q - 0.55) / 0.43 if family == "disagree" else 3.0
    clean = 0.1 + (q - 0.1) * (1 - np.exp(-epochs / tau))
    seed = zlib.crc32(repr((family, x)).encode())  # the same in every process
    return clean + np.random.default_rng(seed).normal(0, NOISE, len(epochs))


@functools.lru_cache(maxsize=8)
def curves(family: str) -> Curves:
    """One per process: trials of a sweep share it."""
    return Curves(family)
