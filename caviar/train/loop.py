"""The built-in train function: one screen, a straight-line loop, one dict per checkpoint."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caviar import session
from caviar.train import DEFAULTS
from caviar.train.data import Data
from caviar.train.models import mlp


def make_optimizer(params: Any, hp: dict[str, Any]) -> torch.optim.Optimizer:
    if hp["optimizer"] == "sgd":
        return torch.optim.SGD(
            params, lr=hp["lr"], momentum=hp["momentum"], nesterov=bool(hp["nesterov"]),
            weight_decay=hp["weight_decay"],
        )
    if hp["optimizer"] in ("adam", "adamw"):
        cls = torch.optim.AdamW if hp["optimizer"] == "adamw" else torch.optim.Adam
        return cls(
            params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
            weight_decay=hp["weight_decay"],
        )
    raise ValueError(f"unknown optimizer {hp['optimizer']!r}; expected sgd, adam or adamw")


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    net.eval()
    logits = net(x)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def train(config: dict[str, Any], *, data: Data, model: str = "mlp", threads: int = 1) -> None:
    """Train one trial for config["max_epochs"] epochs, reporting and checkpointing every
    epoch; resumes from the trial's checkpoint when there is one."""
    hp = {**DEFAULTS, **config}
    max_epochs = int(hp["max_epochs"])
    torch.set_num_threads(threads)
    torch.manual_seed(int(hp["seed"]))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def tensor(a: Any) -> torch.Tensor:
        return torch.tensor(a, device=device)

    x_tr, y_tr, x_val, y_val = map(tensor, (data.x_train, data.y_train, data.x_val, data.y_val))
    if model != "mlp":
        raise ValueError(f"unknown model {model!r}")
    net = mlp(
        data.num_features, data.num_classes, int(hp["hidden"]), int(hp["depth"]),
        hp["activation"], float(hp["dropout"]),
    ).to(device)
    opt = make_optimizer(net.parameters(), hp)
    shuffle = torch.Generator().manual_seed(int(hp["seed"]))
    start = 0
    if (ckpt := session.get_checkpoint()) is not None:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        shuffle.set_state(ckpt["shuffle_rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        start = ckpt["epoch"]

    n, bs = len(x_tr), int(hp["batch_size"])
    for epoch in range(start + 1, max_epochs + 1):
        t0 = time.perf_counter()
        net.train()
        total = torch.zeros((), device=device)
        for idx in torch.randperm(n, generator=shuffle).to(device).split(bs):
            loss = F.cross_entropy(net(x_tr[idx]), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        train_loss = (total / n).item()
        val_loss, val_acc = evaluate(net, x_val, y_val)
        seconds = time.perf_counter() - t0
        diverged = not (math.isfinite(train_loss) and math.isfinite(val_loss))
        metrics = {
            "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc,
            "lr": opt.param_groups[0]["lr"], "epoch_seconds": seconds,
            "samples_per_s": n / seconds, "diverged": diverged,
        }
        checkpoint = None if diverged else {
            "epoch": epoch, "model": net.state_dict(), "optimizer": opt.state_dict(),
            "shuffle_rng": shuffle.get_state(), "torch_rng": torch.get_rng_state(),
        }
        session.report(metrics, checkpoint)
