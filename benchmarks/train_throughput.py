"""Training throughput of caviar's loop against the textbook DataLoader loop and the compute
bound, side by side on mnist1d, one CPU thread by default.

(a) textbook: TensorDataset + DataLoader(shuffle=True), model.train(), zero_grad / backward /
    step over the batches it yields.
(b) compute bound: the same model and optimizer stepping over batches sliced in advance.
caviar: the built-in train function (`caviar.train.loop.train`), as every trial runs it; its
    reported samples_per_s times the training phase of each epoch.

All three train the same MLP with AdamW at the same learning rate for the same epochs, once per
seed; the median epoch over all seeds is reported (each run's first epoch is a warm-up and is
left out), and the mean final validation accuracy shows they learn alike.

    python -m benchmarks.train_throughput [--epochs 30] [--seeds 6] [--threads 1]
                                          [--batch-sizes 64 256]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from caviar import session
from caviar.train import DEFAULTS, models
from caviar.train.data import load
from caviar.train.loop import train

CONFIG = {"optimizer": "adamw", "lr": 3e-3, "hidden": 256, "depth": 2, "weight_decay": 1e-4}


def _model(data, device, seed):
    torch.manual_seed(seed)
    net = models.build("mlp", data.shape, data.num_classes, {**DEFAULTS, **CONFIG}).to(device)
    return net, torch.optim.AdamW(
        net.parameters(), lr=CONFIG["lr"], weight_decay=CONFIG["weight_decay"]
    )


@torch.no_grad()
def _accuracy(net, data, device) -> float:
    x, y = torch.as_tensor(data.x_val).to(device), torch.as_tensor(data.y_val).to(device)
    return (net.eval()(x).argmax(1) == y).float().mean().item()


def _timed_epochs(data, epochs: int, device, batches, seed) -> tuple[list[float], float]:
    """The textbook step over whatever `batches()` yields, timed per epoch."""
    net, opt = _model(data, device, seed)
    rates = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        net.train()
        for xb, yb in batches():
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(net(xb), yb)
            loss.backward()
            opt.step()
        _sync(device)
        rates.append(len(data.x_train) / (time.perf_counter() - t0))
    return rates, _accuracy(net, data, device)


def textbook(data, bs: int, epochs: int, device, seed: int) -> tuple[list[float], float]:
    dataset = TensorDataset(torch.as_tensor(data.x_train), torch.as_tensor(data.y_train))
    loader = DataLoader(dataset, batch_size=bs, shuffle=True)
    return _timed_epochs(data, epochs, device, lambda: loader, seed)


def compute_bound(data, bs: int, epochs: int, device, seed: int) -> tuple[list[float], float]:
    x, y = torch.as_tensor(data.x_train).to(device), torch.as_tensor(data.y_train).to(device)
    batches = list(zip(x.split(bs), y.split(bs), strict=True))
    return _timed_epochs(data, epochs, device, lambda: batches, seed)


def caviar_loop(data, bs: int, epochs: int, device, seed: int, threads: int) -> tuple:
    fn = functools.partial(train, data=data, model="mlp", threads=threads)
    config = {**CONFIG, "batch_size": bs, "max_epochs": epochs, "seed": seed}
    results = session.run(fn, config, session.Session("val_acc")).results
    return [r["samples_per_s"] for r in results], results[-1]["val_acc"]


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=6, help="repeats with other seeds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load("mnist1d")
    print(
        f"mnist1d MLP {CONFIG}, {len(data.x_train)} training samples, device {device}, "
        f"{args.threads} thread(s), {args.epochs} epochs; median samples/s of epochs 2..N"
    )
    for bs in args.batch_sizes:
        variants = {
            "textbook DataLoader (a)": textbook,
            "compute bound (b)": compute_bound,
            "caviar": functools.partial(caviar_loop, threads=args.threads),
        }
        median, accuracy = {}, {}
        for name, fn in variants.items():
            runs = [fn(data, bs, args.epochs, device, seed) for seed in range(args.seeds)]
            median[name] = statistics.median(r for rates, _ in runs for r in rates[1:])
            accuracy[name] = statistics.mean(acc for _, acc in runs)
        print(f"\nbatch {bs}:")
        for k in variants:
            print(f"  {k:24s} {median[k]:12,.0f} samples/s   mean val_acc {accuracy[k]:.3f}")
        a, b = (
            median["caviar"] / median["textbook DataLoader (a)"],
            median["caviar"] / median["compute bound (b)"],
        )
        target_a = 4.0 if device.type == "cuda" else 1.3
        verdict = "PASS" if a >= target_a else "MISS"
        print(f"  caviar / (a) = {a:.2f}x (target >= {target_a}x: {verdict})")
        if device.type == "cpu":
            print(f"  caviar / (b) = {b:.2f}x (target >= 0.9x: {'PASS' if b >= 0.9 else 'MISS'})")
        gap = 100 * (accuracy["caviar"] - accuracy["textbook DataLoader (a)"])
        print(f"  val_acc caviar - (a) = {gap:+.1f} points (target within 1 point)")


if __name__ == "__main__":
    main()
