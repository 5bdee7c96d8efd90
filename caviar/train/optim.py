"""Optimizers and learning-rate schedules.

The schedule is a pure function of the optimizer step, as in nanoGPT's ``get_lr(it)``, times a
factor that only reduce-on-plateau changes; the loop sets the learning rate before every step.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def make_optimizer(params: Any, hp: dict[str, Any], lr: float) -> torch.optim.Optimizer:
    # Fused kernels (CUDA and, since torch 2.4, CPU): one kernel for the whole update instead of
    # a handful of ops per parameter; +35% samples/s for a small MLP on one CPU thread
    # (benchmarks/RESULTS.md). The same algorithm as the default implementation.
    fast = {"fused": True}
    if hp["optimizer"] == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=float(hp["momentum"]),
            nesterov=bool(hp["nesterov"]),
            weight_decay=float(hp["weight_decay"]),
            **fast,
        )
    if hp["optimizer"] in ("adam", "adamw"):
        cls = torch.optim.AdamW if hp["optimizer"] == "adamw" else torch.optim.Adam
        return cls(
            params,
            lr=lr,
            betas=(float(hp["beta1"]), float(hp["beta2"])),
            eps=float(hp["eps"]),
            weight_decay=float(hp["weight_decay"]),
            **fast,
        )
    raise ValueError(f"unknown optimizer {hp['optimizer']!r}")


def scaled_lr(hp: dict[str, Any]) -> float:
    """The learning rate after the batch-size scaling rule: batch size k times the base batch
    size scales it by k (linear) or sqrt(k)."""
    k = int(hp["batch_size"]) * int(hp["accumulate"]) / int(hp["base_batch_size"])
    rule = hp["lr_scaling"]
    return float(hp["lr"]) * (k if rule == "linear" else math.sqrt(k) if rule == "sqrt" else 1.0)


class Schedule:
    """The learning rate at each optimizer step: linear warmup, then the schedule's shape."""

    def __init__(self, hp: dict[str, Any], steps_per_epoch: int):
        self.kind = hp["schedule"]
        self.base = scaled_lr(hp)
        self.steps_per_epoch = steps_per_epoch
        self.total = steps_per_epoch * int(hp["max_epochs"])
        self.warmup = int(float(hp["warmup_epochs"]) * steps_per_epoch)
        self.step_epochs, self.gamma = int(hp["step_epochs"]), float(hp["gamma"])
        self.patience = int(hp["plateau_patience"])
        # Reduce-on-plateau state.
        self.factor, self.best, self.bad_epochs = 1.0, math.inf, 0

    def lr(self, step: int) -> float:
        if self.kind == "onecycle":
            return self.base * _one_cycle(step, self.total)
        if step < self.warmup:
            return self.base * (step + 1) / self.warmup
        if self.kind == "cosine":
            t = (step - self.warmup) / max(1, self.total - self.warmup)
            return self.base * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        if self.kind == "step":
            return self.base * self.gamma ** (step // (self.step_epochs * self.steps_per_epoch))
        return self.base * self.factor  # constant and plateau

    def end_epoch(self, val_loss: float) -> None:
        if self.kind != "plateau":
            return
        if val_loss < self.best - 1e-4 * abs(self.best):
            self.best, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.factor *= self.gamma
                self.bad_epochs = 0

    def state_dict(self) -> dict[str, float]:
        return {"factor": self.factor, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.factor, self.best, self.bad_epochs = (
            state["factor"],
            state["best"],
            int(state["bad_epochs"]),
        )


def _one_cycle(step: int, total: int, pct: float = 0.3) -> float:
    """Cosine up from 1/25 to 1 over the first 30% of steps, then down to 1/1e4 (as PyTorch's
    OneCycleLR)."""
    up = max(1, int(pct * total))
    if step < up:
        return 1 / 25 + (1 - 1 / 25) * 0.5 * (1 - math.cos(math.pi * step / up))
    t = min(1.0, (step - up) / max(1, total - up))
    return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * t))
