"""The learning-rate range test: grow the LR exponentially from `min_lr` to `max_lr` over about
one epoch (at least `min_steps` steps), smooth the loss, stop when it diverges, and suggest
the LR where the smoothed loss falls fastest (per unit of log LR)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from caviar.errors import LRFindError
from caviar.train import DEFAULTS, models
from caviar.train.data import Data
from caviar.train.optim import make_optimizer


@dataclass(frozen=True)
class LRFind:
    lrs: list[float]
    losses: list[float]
    """Smoothed (bias-corrected exponential moving average) training loss at each LR."""
    suggestion: float
    low: float
    high: float
    """A log-uniform range around the suggestion, below where the loss blew up."""

    def spec_line(self) -> str:
        return f"lr: {{loguniform: [{self.low:.2g}, {self.high:.2g}]}}"


def lr_find(
    data: Data,
    model: str,
    config: dict[str, Any],
    min_lr: float = 1e-7,
    max_lr: float = 1.0,
    min_steps: int = 100,
    beta: float = 0.98,
    threads: int = 1,
) -> LRFind:
    hp = {**DEFAULTS, **config}
    torch.set_num_threads(threads)
    torch.manual_seed(int(hp["seed"]))
    net = models.build(model, data.shape, data.num_classes, hp)
    opt = make_optimizer(net.parameters(), hp, min_lr)
    x, y = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    bs = int(hp["batch_size"])
    steps = max(min_steps, math.ceil(len(x) / bs))
    gen = torch.Generator().manual_seed(int(hp["seed"]))
    batches: list[torch.Tensor] = []
    lrs, losses, avg, best = [], [], 0.0, math.inf
    net.train()
    for i in range(steps):
        if not batches:
            batches = list(torch.randperm(len(x), generator=gen).split(bs))
        idx = batches.pop()
        lr = min_lr * (max_lr / min_lr) ** (i / (steps - 1))
        for group in opt.param_groups:
            group["lr"] = lr
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        avg = beta * avg + (1 - beta) * loss.item()
        smoothed = avg / (1 - beta ** (i + 1))
        if not math.isfinite(smoothed) or smoothed > 4 * best:
            break  # diverged
        best = min(best, smoothed)
        lrs.append(lr)
        losses.append(smoothed)
    if len(lrs) < 2:
        how = "became non-finite" if not math.isfinite(smoothed) else "blew up"
        raise LRFindError(
            f"lr-find: the training loss {how} at step {i + 1} (lr {lr:.2g}), before the range "
            "test had two points to compare; a loss that diverges at the smallest learning "
            "rates comes from the spec: check its fixed and middle-of-domain values (a huge "
            "weight_decay, a tiny eps, ...) and its data (huge or non-finite features), or "
            f"start lower than min_lr={min_lr:.2g}"
        )
    return _suggest(lrs, losses)


def _suggest(lrs: list[float], losses: list[float]) -> LRFind:
    log_lr = np.log10(lrs)
    # Skip the first tenth: the moving average is still warming up there. Stop at the lowest
    # loss: past it the loss turns up, and a dip between two of its spikes there (a loss
    # falling from 4.8 to 4.75 at lr 1, seen on digits) is not where training works.
    skip = max(1, len(lrs) // 10)
    lowest = int(np.argmin(losses))
    slope = np.gradient(np.asarray(losses), log_lr)
    i = skip + int(np.argmin(slope[skip : max(lowest, skip) + 1]))
    suggestion = lrs[i]
    ceiling = lrs[lowest]  # past the minimum the loss turns up
    high = min(suggestion * 10, max(ceiling, suggestion * 2))
    return LRFind(list(lrs), list(losses), suggestion, suggestion / 10, high)


def plot(result: LRFind, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses)
    ax.axvline(result.suggestion, color="C3", ls="--", label=f"suggested {result.suggestion:.2g}")
    ax.axvspan(result.low, result.high, color="C2", alpha=0.15, label=result.spec_line())
    ax.set(
        xscale="log", xlabel="learning rate", ylabel="smoothed training loss", title="LR range test"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
