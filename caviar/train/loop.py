"""The built-in train function: one screen, a straight-line loop, one dict per checkpoint.

The whole data set lives as tensors on the trial's device and batches are slices of a shuffled
index: no per-sample DataLoader. On CUDA it runs with TF32 matmuls, fused Adam(W) and, with
``precision: bf16``, bf16 autocast; the same code runs on the CPU.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caviar import session
from caviar.train import DEFAULTS, models
from caviar.train.data import Data
from caviar.train.optim import Schedule, make_optimizer


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: Any) -> tuple[float, float]:
    net.eval()
    with amp():
        logits = net(x).float()
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def train(config: dict[str, Any], *, data: Data, model: str = "mlp", threads: int = 1) -> None:
    """Train one trial for config["max_epochs"] epochs, reporting and checkpointing every
    epoch; resumes from the trial's checkpoint when there is one."""
    hp = {**DEFAULTS, **config}
    max_epochs, bs, accumulate = int(hp["max_epochs"]), int(hp["batch_size"]), int(hp["accumulate"])
    torch.set_num_threads(threads)
    torch.manual_seed(int(hp["seed"]))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    def amp() -> Any:
        if hp["precision"] == "bf16":
            return torch.autocast(device.type, torch.bfloat16)
        return contextlib.nullcontext()  # cheaper per step than a disabled autocast

    def tensor(a: Any) -> torch.Tensor:
        return torch.as_tensor(a).to(device)

    x_tr, y_tr, x_val, y_val, x_te, y_te = map(
        tensor, (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test)
    )
    net = models.build(model, data.shape, data.num_classes, hp).to(device)
    steps_per_epoch = math.ceil(len(x_tr) / (bs * accumulate))
    schedule = Schedule(hp, steps_per_epoch)
    opt = make_optimizer(net.parameters(), hp, schedule.lr(0))
    shuffle = torch.Generator().manual_seed(int(hp["seed"]))
    start, best_acc, test_acc, bad_epochs = 0, -1.0, math.nan, 0
    if (ckpt := session.get_checkpoint()) is not None:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        shuffle.set_state(ckpt["shuffle_rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        start, best_acc, test_acc, bad_epochs = (
            ckpt["epoch"],
            ckpt["best_val_acc"],
            ckpt["test_acc"],
            ckpt["bad_epochs"],
        )

    smoothing, alpha = float(hp["label_smoothing"]), float(hp["mixup_alpha"])
    clip_norm, clip_value = float(hp["clip_norm"]), float(hp["clip_value"])
    mixup = torch.distributions.Beta(alpha, alpha) if alpha > 0 else None
    step = start * steps_per_epoch
    for epoch in range(start + 1, max_epochs + 1):
        t0 = time.perf_counter()
        net.train()
        # One gather per epoch puts the examples in shuffled order; each batch is then a view.
        order = torch.randperm(len(x_tr), generator=shuffle).to(device)
        xs, ys = x_tr[order].split(bs), y_tr[order].split(bs)
        losses = []
        for i, (xb, yb) in enumerate(zip(xs, ys, strict=True)):
            with amp():
                if mixup is None:
                    loss = F.cross_entropy(net(xb), yb, label_smoothing=smoothing)
                else:
                    lam = float(mixup.sample())
                    perm = torch.randperm(len(xb), device=device)
                    out = net(lam * xb + (1 - lam) * xb[perm])
                    loss = lam * F.cross_entropy(out, yb, label_smoothing=smoothing) + (
                        1 - lam
                    ) * F.cross_entropy(out, yb[perm], label_smoothing=smoothing)
            (loss / accumulate if accumulate > 1 else loss).backward()
            losses.append(loss.detach())
            if (i + 1) % accumulate and i + 1 < len(xs):
                continue
            if clip_norm > 0:
                nn.utils.clip_grad_norm_(net.parameters(), clip_norm)
            if clip_value > 0:
                nn.utils.clip_grad_value_(net.parameters(), clip_value)
            if (lr := schedule.lr(step)) != opt.param_groups[0]["lr"]:
                for group in opt.param_groups:
                    group["lr"] = lr
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
        sizes = torch.tensor([len(b) for b in ys], device=device, dtype=torch.float32)
        total = torch.stack(losses).float() @ sizes
        train_loss = (total / len(x_tr)).item()  # .item() waits for the device
        train_seconds = time.perf_counter() - t0
        val_loss, val_acc = evaluate(net, x_val, y_val, amp)
        diverged = not (math.isfinite(train_loss) and math.isfinite(val_loss))
        if not diverged and val_acc > best_acc:
            # The test split scores the best checkpoint only; it never picks a trial.
            best_acc, bad_epochs = val_acc, 0
            test_acc = evaluate(net, x_te, y_te, amp)[1]
        else:
            bad_epochs += 1
        schedule.end_epoch(val_loss)
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": opt.param_groups[0]["lr"],
            "epoch_seconds": time.perf_counter() - t0,
            "samples_per_s": len(x_tr) / train_seconds,
            "best_val_acc": best_acc,
            "test_acc": test_acc,
            "diverged": diverged,
        }
        checkpoint = (
            None
            if diverged
            else {
                "epoch": epoch,
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "schedule": schedule.state_dict(),
                "shuffle_rng": shuffle.get_state(),
                "torch_rng": torch.get_rng_state(),
                "best_val_acc": best_acc,
                "test_acc": test_acc,
                "bad_epochs": bad_epochs,
                # What `caviar.train.models.build` needs to rebuild the network for inference.
                "arch": {
                    "model": model,
                    "shape": data.shape,
                    "num_classes": data.num_classes,
                    "hp": hp,
                },
            }
        )
        session.report(metrics, checkpoint)
        if int(hp["patience"]) and bad_epochs >= int(hp["patience"]):
            return  # early stopping: no better val_acc for `patience` epochs
