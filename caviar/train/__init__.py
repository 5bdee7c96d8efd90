"""The shared PyTorch train function.

This package's ``__init__`` only names what the built-in function offers, without importing
torch, so that `caviar validate` stays fast. The function itself is `caviar.train.loop.train`.
Its hyperparameters ("knobs") are declared once, in `KNOBS`: defaults, the values each takes
(checked by `caviar.spec` before Ray starts) and the table of them in the README.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    "params",  # the model's trainable parameters: a size to trade against accuracy
)


@dataclass(frozen=True)
class Knob:
    """One hyperparameter of the built-in train function: its default, what it does, and the
    values it takes: one of `choices`, or a finite number from `low` to `high` (either may be
    None: unbounded), each end included or not, an integer if `integer`."""

    name: str
    default: object
    meaning: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    integer: bool = False

    def accepts(self, value: object) -> bool:
        if self.choices is not None:
            return value in self.choices
        if not _is_number(value):
            return False
        assert isinstance(value, (int, float))
        if self.integer and not float(value).is_integer():
            return False
        above = self.low is None or value > self.low or (self.low_inclusive and value == self.low)
        below = (
            self.high is None or value < self.high or (self.high_inclusive and value == self.high)
        )
        return above and below

    def bounds(self) -> str:
        """The numeric range as '>= 0 and < 1'."""
        parts = []
        if self.low is not None:
            parts.append(f"{'>=' if self.low_inclusive else '>'} {_text(self.low)}")
        if self.high is not None:
            parts.append(f"{'<=' if self.high_inclusive else '<'} {_text(self.high)}")
        return " and ".join(parts)

    def expected(self, value: object) -> str:
        """What a numeric knob takes, as 'dropout >= 0 and < 1', saying 'an integer' or 'a
        finite' too when `value` is a number that is neither."""
        kind = ""
        if _is_number(value, finite=False):
            assert isinstance(value, (int, float))
            if not math.isfinite(value):
                kind = "a finite "
            elif self.integer and not float(value).is_integer():
                kind = "an integer "
        return f"{kind}{self.name} {self.bounds()}"

    def values(self) -> str:
        """The values it takes, as the README's table writes them."""
        if self.choices is not None:
            return ", ".join(f"`{_text(c)}`" for c in self.choices)
        return f"{'integer ' if self.integer else ''}{self.bounds()}"


def _is_number(value: object, finite: bool = True) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and (not finite or math.isfinite(value))  # type: ignore[arg-type]


def _text(value: object) -> str:
    """A value as a spec writes it: true, 0.001, 1e-08, adamw, 18446744073709551615."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


_BOOL = (True, False)

# Every knob, with what breaks it: population.py, models.py and optim.py read them.
KNOBS: tuple[Knob, ...] = (
    Knob(
        "max_epochs",
        20,
        "epochs a trial trains (fewer with `patience`); set it as `train.max_epochs`",
        low=1,
        integer=True,
    ),
    # Seeds torch and numpy generators, which take 0 to 2**64 - 1.
    Knob(
        "seed",
        0,
        "model init, batch order, dropout and mixup noise",
        low=0,
        high=2**64 - 1,
        integer=True,
    ),
    # optimizer
    Knob(
        "optimizer",
        "adamw",
        "`sgd` uses `momentum` and `nesterov`; `adam` and `adamw` use `beta1`, `beta2`, `eps`",
        choices=("sgd", "adam", "adamw"),
    ),
    Knob("lr", 1e-3, "learning rate: the peak of the schedule", low=0, low_inclusive=False),
    Knob("weight_decay", 0.0, "decoupled for adamw, an L2 term of the gradient otherwise", low=0),
    Knob("momentum", 0.9, "sgd's momentum", low=0, high=1, high_inclusive=False),
    Knob("nesterov", False, "sgd: Nesterov momentum", choices=_BOOL),
    Knob(
        "beta1",
        0.9,
        "adam, adamw: decay of the gradient average",
        low=0,
        high=1,
        high_inclusive=False,
    ),
    Knob(
        "beta2",
        0.999,
        "adam, adamw: decay of the squared-gradient average",
        low=0,
        high=1,
        high_inclusive=False,
    ),
    # 0 divides by zero where a gradient has been zero so far.
    Knob("eps", 1e-8, "adam, adamw: added to the denominator", low=0, low_inclusive=False),
    Knob(
        "batch_size",
        64,
        "examples per batch; at most the training split's size",
        low=1,
        integer=True,
    ),
    # learning-rate schedule
    Knob(
        "schedule",
        "constant",
        "the learning rate's shape over training: `step` (`step_epochs`, `gamma`), `cosine` "
        "(to 0), `plateau` (`plateau_patience`, `gamma`), `onecycle` (up, then down to "
        "lr / 1e4)",
        choices=("constant", "step", "cosine", "plateau", "onecycle"),
    ),
    Knob(
        "warmup_epochs",
        0.0,
        "linear warmup over this many epochs, fractions allowed (not with onecycle, which has "
        "its own)",
        low=0,
    ),
    # step: 0 would divide by zero.
    Knob(
        "step_epochs",
        10,
        "step: multiply the lr by `gamma` every this many epochs",
        low=1,
        integer=True,
    ),
    # 0 stops training, and a negative factor turns descent into ascent.
    Knob(
        "gamma",
        0.1,
        "step, plateau: the factor the lr is multiplied by",
        low=0,
        low_inclusive=False,
    ),
    Knob(
        "plateau_patience",
        3,
        "plateau: multiply the lr by `gamma` after more than this many epochs without a lower "
        "`val_loss`",
        low=0,
        integer=True,
    ),
    Knob(
        "lr_scaling",
        "none",
        "scale `lr` by k = `batch_size` x `accumulate` / `base_batch_size`: `linear` (k) or "
        "`sqrt` (sqrt k)",
        choices=("none", "linear", "sqrt"),
    ),
    Knob(
        "base_batch_size",
        64,
        "the batch size at which `lr_scaling` keeps `lr`",
        low=1,
        integer=True,
    ),
    # model
    Knob("hidden", 128, "mlp: the width of each hidden layer", low=1, integer=True),
    Knob("depth", 2, "mlp: hidden layers; cnn: conv blocks", low=1, integer=True),
    Knob("channels", 32, "cnn: channels of each conv block", low=1, integer=True),
    Knob("kernel_size", 5, "cnn: the convolutions' kernel size", low=1, integer=True),
    Knob(
        "pool",
        "max",
        "cnn: pooling after each block that halves the length while it is more than 4",
        choices=("max", "avg", "none"),
    ),
    Knob(
        "activation",
        "relu",
        "the hidden layers' activation",
        choices=("relu", "leaky_relu", "gelu", "tanh"),
    ),
    Knob(
        "batch_norm",
        False,
        "batch norm between each layer and its activation (the layer's bias dropped)",
        choices=_BOOL,
    ),
    Knob(
        "dropout",
        0.0,
        "dropout probability after each hidden activation (mlp) or before the classifier (cnn)",
        low=0,
        high=1,
        high_inclusive=False,
    ),
    Knob(
        "init",
        "default",
        "weight init: `default` is PyTorch's",
        choices=("default", "kaiming", "xavier"),
    ),
    # regularization and stability
    Knob(
        "label_smoothing",
        0.0,
        "weight of the uniform distribution mixed into the training targets",
        low=0,
        high=1,
        high_inclusive=False,
    ),
    Knob(
        "mixup_alpha",
        0.0,
        "mixup: each batch mixed with a shuffled copy of itself, weights from "
        "Beta(alpha, alpha); 0 is off",
        low=0,
    ),
    Knob("clip_norm", 0.0, "clip each step's gradient to this norm; 0 is off", low=0),
    Knob(
        "clip_value",
        0.0,
        "clip each gradient element to [-clip_value, clip_value]; 0 is off",
        low=0,
    ),
    Knob(
        "accumulate", 1, "batches whose gradients add up to one optimizer step", low=1, integer=True
    ),
    Knob(
        "patience",
        0,
        "stop a trial after this many epochs without a better `val_acc`; 0 is off",
        low=0,
        integer=True,
    ),
    Knob(
        "precision",
        "fp32",
        "`bf16`: autocast to bfloat16 (on CUDA; also runs on CPU)",
        choices=("fp32", "bf16"),
    ),
)

KNOBS_BY_NAME = {k.name: k for k in KNOBS}
# Every hyperparameter the built-in function reads, with its default.
DEFAULTS: dict[str, object] = {k.name: k.default for k in KNOBS}
HYPERPARAMETERS = tuple(DEFAULTS)
# Allowed values of the categorical hyperparameters, checked at validation time.
CHOICES: dict[str, tuple] = {k.name: k.choices for k in KNOBS if k.choices is not None}


SHARED = (
    "depth",
    "kernel_size",
    "pool",
    "activation",
    "batch_norm",
    "batch_size",
    "accumulate",
    "optimizer",
    "nesterov",
    "precision",
)
"""Hyperparameters that fix the shape of the computation: members of one population agree on
them. Everything else (widths included) may differ between members."""


def group_key(config: dict[str, object]) -> tuple:
    """Configurations with the same key can train in one population."""
    hp = {**DEFAULTS, **config}
    return tuple(hp[k] for k in SHARED)


def knob_table() -> str:
    """The README's table of the knobs, in markdown."""
    rows = ["| knob | default | values | meaning |", "|---|---|---|---|"]
    rows += [f"| `{k.name}` | {_text(k.default)} | {k.values()} | {k.meaning} |" for k in KNOBS]
    return "\n".join(rows)
