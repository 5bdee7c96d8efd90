"""A W&B-style train function moved to caviar: it reads the nested config as it read
wandb.config, and reports with ray.tune.report where it called wandb.log (caviar.report
works too). A small logistic-regression-with-a-hidden-layer on scikit-learn's digits."""

import numpy as np
import torch
from ray import tune
from sklearn.datasets import load_digits


def train(config):
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    order = np.random.default_rng(0).permutation(len(x))
    tr, va = order[:1400], order[1400:]
    model = torch.nn.Sequential(
        torch.nn.Linear(64, config["hidden"]),
        torch.nn.ReLU(),
        torch.nn.Linear(config["hidden"], 10),
    )
    opt = torch.optim.SGD(
        model.parameters(),
        lr=config["optimizer"]["lr"],
        momentum=config["optimizer"]["momentum"],
    )
    for _ in range(config["max_epochs"]):
        for batch in torch.split(torch.tensor(tr), 64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
        with torch.no_grad():
            val_acc = (model(x[va]).argmax(1) == y[va]).float().mean().item()
        tune.report({"val_acc": val_acc})
