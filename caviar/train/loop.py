"""The built-in train function: one trial is a population of one (`caviar.train.population`),
so a trial trains the same alone as fused with others. It reports and checkpoints every epoch
and resumes from the trial's checkpoint when there is one.

The whole data set lives as tensors on the trial's device and batches are gathered from a
shuffled index: no per-sample DataLoader. On CUDA it runs with TF32 matmuls and, with
``precision: bf16``, bf16 autocast; the same code runs on the CPU.
"""

from __future__ import annotations

from typing import Any

from caviar import session
from caviar.train.data import Data
from caviar.train.population import Population


def train(config: dict[str, Any], *, data: Data, model: str = "mlp", threads: int = 1) -> None:
    """Train one trial for config["max_epochs"] epochs (fewer with `patience`)."""
    population = Population(data, model, threads=threads)
    population.add("trial", config, session.get_checkpoint())
    while len(population):
        ((_, metrics, checkpoint, _),) = population.train_epoch()
        session.report(metrics, checkpoint)
