"""Train functions that replay a curve (`curves.py`) epoch by epoch: a trial costs
milliseconds, so schedulers and searchers run through real Ray Tune over many seeds.

`train` is a caviar train function (`caviar.report`; no checkpoints: a replay restarts);
`ray_train` is the same written for plain Ray Tune (`ray.tune.report`), for Ray's own
schedulers and searchers. Both take the family from the config's ``family`` key.
"""

from __future__ import annotations

from typing import Any

from benchmarks.early_stopping.curves import curves


def train(config: dict[str, Any]) -> None:
    import caviar

    curve = curves(config["family"]).curve(config)
    for epoch in range(1, len(curve) + 1):
        caviar.report({"epoch": epoch, "val_acc": float(curve[epoch - 1])})


def ray_train(config: dict[str, Any]) -> None:
    from ray import tune

    curve = curves(config["family"]).curve(config)
    for epoch in range(1, len(curve) + 1):
        tune.report({"epoch": epoch, "val_acc": float(curve[epoch - 1])})
