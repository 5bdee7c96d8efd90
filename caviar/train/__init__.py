"""The shared PyTorch train function.

This package's ``__init__`` only names what the built-in function offers, without importing
torch, so that `caviar validate` stays fast. The function itself is `caviar.train.loop.train`.
"""

TASKS = ("mnist1d", "digits", "synthetic", "file")
MODELS = ("mlp", "cnn")
METRICS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_acc",
    "lr",
    "epoch_seconds",
    "samples_per_s",
    "best_val_acc",
    "test_acc",
)
# Training-split sizes of the built-in tasks (after the fixed validation / test hold-outs), to
# check batch sizes at validation time.
TRAIN_SIZES = {"mnist1d": 3200, "digits": 1150, "synthetic": 1920}

# Every hyperparameter the built-in function reads, with its default.
DEFAULTS: dict[str, object] = {
    "max_epochs": 20,  # set from train.max_epochs
    "seed": 0,
    # optimizer
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "momentum": 0.9,
    "nesterov": False,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "batch_size": 64,
    # learning-rate schedule
    "schedule": "constant",
    "warmup_epochs": 0.0,
    "step_epochs": 10,  # step: multiply by gamma every step_epochs
    "gamma": 0.1,  # step and plateau factor
    "plateau_patience": 3,
    "lr_scaling": "none",  # none | linear | sqrt, against base_batch_size
    "base_batch_size": 64,
    # model
    "hidden": 128,
    "depth": 2,
    "channels": 32,
    "kernel_size": 5,
    "pool": "max",
    "activation": "relu",
    "batch_norm": False,
    "dropout": 0.0,
    "init": "default",
    # regularization and stability
    "label_smoothing": 0.0,
    "mixup_alpha": 0.0,
    "clip_norm": 0.0,  # 0: off
    "clip_value": 0.0,  # 0: off
    "accumulate": 1,  # gradient accumulation steps
    "patience": 0,  # early stopping on val_acc; 0: off
    "precision": "fp32",  # fp32 | bf16 (autocast)
}
HYPERPARAMETERS = tuple(DEFAULTS)

# Allowed values of the categorical hyperparameters, checked at validation time.
CHOICES: dict[str, tuple] = {
    "optimizer": ("sgd", "adam", "adamw"),
    "schedule": ("constant", "step", "cosine", "plateau", "onecycle"),
    "lr_scaling": ("none", "linear", "sqrt"),
    "activation": ("relu", "leaky_relu", "gelu", "tanh"),
    "init": ("default", "kaiming", "xavier"),
    "pool": ("max", "avg", "none"),
    "precision": ("fp32", "bf16"),
    "nesterov": (True, False),
    "batch_norm": (True, False),
}
