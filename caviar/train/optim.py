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
            # torch refuses Nesterov without momentum; it is plain SGD then.
            nesterov=bool(hp["nesterov"]) and float(hp["momentum"]) > 0,
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
        # The first epoch always improves on nothing (inf - 1e-4 * inf would be NaN).
        if self.best == math.inf or val_loss < self.best - 1e-4 * abs(self.best):
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


class StackedOptimizer:
    """SGD, Adam or AdamW over stacked parameters (one leading member dimension), each member
    with its own hyperparameters.

    Two ways to apply one update, the same arithmetic (torch.optim's; checked against each
    other in the tests):
    - per member (`batched=False`): torch's fused kernel once per member, over views of the
      member's slices: one pass over memory, k calls. The CPU's always, and a small
      population's on a GPU;
    - batched: one set of tensor operations for all members, with per-member hyperparameters
      as tensors: about twenty kernel launches per parameter tensor whatever k is. On an H200
      it beat the per-member path by 1.35x at k = 32 (benchmarks/RESULTS.md).

    `state` and `steps` are stacked like the parameters ([k, ...] and [k]); the owner slices
    and restacks them when members join or leave.
    """

    def __init__(
        self, kind: str, nesterov: bool, hps: list[dict[str, Any]], device: Any, batched: bool
    ):
        self.kind, self.nesterov, self.batched, self.hps = kind, nesterov, batched, hps
        self.names = ("momentum_buffer",) if kind == "sgd" else ("exp_avg", "exp_avg_sq")

        def per_member(name: str) -> torch.Tensor:
            return torch.tensor([float(hp[name]) for hp in hps], device=device)

        self.weight_decay, self.momentum = per_member("weight_decay"), per_member("momentum")
        self.beta1, self.beta2, self.eps = (
            per_member("beta1"),
            per_member("beta2"),
            per_member("eps"),
        )
        self.steps = torch.zeros(len(hps), device=device)
        self.state: list[dict[str, torch.Tensor]] = []

    def init_state(self, params: list[torch.Tensor]) -> None:
        self.state = [{n: torch.zeros_like(p) for n in self.names} for p in params]
        self._make_views(params)

    def _make_views(self, params: list[torch.Tensor]) -> None:
        # Each member's views, made once: the per-member path reuses them every step.
        self._grads = [p.grad for p in params]
        self._views = [
            (
                [p[j] for p in params],
                [p.grad[j] for p in params],
                {n: [s[n][j] for s in self.state] for n in self.names},
                # The fused Adam kernel reads a step count per parameter; they are all this
                # member's count (a view: `steps += 1` updates it).
                [self.steps[j]] * len(params),
            )
            for j in range(len(self.hps))
        ]

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], lr: list[float], lr_tensor: torch.Tensor) -> None:
        """One update of every member; `lr`: each member's learning rate, also as a tensor on
        the parameters' device (the batched path's; made without a blocking copy)."""
        self.steps += 1
        if self.batched:
            self._batched_step(params, lr_tensor)
            return
        if any(p.grad is not g for p, g in zip(params, self._grads, strict=True)):
            self._make_views(params)  # autograd replaced a gradient instead of adding to it
        self._per_member_step(lr)

    def _per_member_step(self, lr: list[float]) -> None:
        # torch's fused kernels themselves, one call per member: what torch.optim.SGD / Adam /
        # AdamW(fused=True) call, without their per-call Python (grouping tensors by device,
        # a step tensor per parameter): a third of the update's time at k = 4 on the CPU.
        for j, (ps, gs, st, counts) in enumerate(self._views):
            hp = self.hps[j]
            if self.kind == "sgd":
                momentum = float(hp["momentum"])
                torch._fused_sgd_(
                    ps,
                    gs,
                    st["momentum_buffer"] if momentum else [],
                    weight_decay=float(hp["weight_decay"]),
                    momentum=momentum,
                    lr=lr[j],
                    dampening=0.0,
                    # torch refuses Nesterov without momentum; it is plain SGD then.
                    nesterov=self.nesterov and momentum > 0,
                    maximize=False,
                    # A zero buffer makes the first step buf = g, as the first step's copy does.
                    is_first_step=False,
                )
                continue
            fused = torch._fused_adamw_ if self.kind == "adamw" else torch._fused_adam_
            fused(
                ps,
                gs,
                st["exp_avg"],
                st["exp_avg_sq"],
                [],
                counts,
                amsgrad=False,
                lr=lr[j],
                beta1=float(hp["beta1"]),
                beta2=float(hp["beta2"]),
                weight_decay=float(hp["weight_decay"]),
                eps=float(hp["eps"]),
                maximize=False,
            )

    def _batched_step(self, params: list[torch.Tensor], lr: torch.Tensor) -> None:
        for p, state in zip(params, self.state, strict=True):
            g = p.grad
            shape = (-1,) + (1,) * (p.dim() - 1)
            lr_, wd = lr.view(shape), self.weight_decay.view(shape)
            if self.kind == "sgd":
                g = g + wd * p
                buf = state["momentum_buffer"]
                # A zero buffer makes the first step buf = g, as torch's clone does.
                buf.mul_(self.momentum.view(shape)).add_(g)
                g = g + self.momentum.view(shape) * buf if self.nesterov else buf
                p.sub_(lr_ * g)
                continue
            if self.kind == "adamw":
                p.mul_(1 - lr_ * wd)
            else:
                g = g + wd * p
            b1, b2 = self.beta1.view(shape), self.beta2.view(shape)
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m.lerp_(g, 1 - b1)
            v.mul_(b2).add_((1 - b2) * g * g)
            t = self.steps.view(shape)
            step_size = lr_ / (1 - b1**t)
            denom = (v.sqrt() / (1 - b2**t).sqrt()).add_(self.eps.view(shape))
            p.sub_(step_size * m / denom)
