"""The shared PyTorch train function.

This package's ``__init__`` only names what the built-in function offers, without importing
torch, so that `caviar validate` stays fast. The function itself is `caviar.train.loop.train`.
"""

TASKS = ("mnist1d", "digits")
MODELS = ("mlp",)
METRICS = ("epoch", "train_loss", "val_loss", "val_acc", "lr", "epoch_seconds", "samples_per_s")

# Every hyperparameter the built-in function reads, with its default.
DEFAULTS: dict[str, object] = {
    "max_epochs": 20,  # set from train.max_epochs
    "seed": 0,
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "momentum": 0.9,
    "nesterov": False,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "batch_size": 64,
    "hidden": 128,
    "depth": 2,
    "activation": "relu",
    "dropout": 0.0,
}
HYPERPARAMETERS = tuple(DEFAULTS)
