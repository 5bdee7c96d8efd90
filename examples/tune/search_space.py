"""A Ray Tune search space and TuneConfig, as Ray's docs write them, for the built-in MLP on
mnist1d. Convert them with:

    caviar import tune examples/tune/search_space.py:search_space --train mnist1d -o sweep.yaml
"""

from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.hyperopt import HyperOptSearch

param_space = {
    "lr": tune.loguniform(1e-4, 3e-2),
    "weight_decay": tune.loguniform(1e-6, 1e-1),
    "hidden": tune.randint(32, 513),  # Ray excludes 513: 32 .. 512
    "depth": tune.qrandint(1, 3),  # q = 1: Ray excludes 3 here too: 1 .. 2
    "dropout": tune.quniform(0.0, 0.5, 0.05),
    "batch_size": tune.choice([32, 64, 128, 256]),
    "optimizer": "adamw",
    "max_epochs": 27,
}

tune_config = tune.TuneConfig(
    metric="val_acc",
    mode="max",
    num_samples=40,
    search_alg=ConcurrencyLimiter(HyperOptSearch(n_initial_points=10), max_concurrent=4),
    scheduler=ASHAScheduler(max_t=27, grace_period=3, reduction_factor=3),
)

search_space = (tune_config, param_space)
