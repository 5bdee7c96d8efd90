"""caviar.train.population: k trials trained as one batched computation (no Ray)."""

import math

import pytest
import torch
from conftest import imported_after
from torch.fx.experimental.proxy_tensor import make_fx

from caviar.train import DEFAULTS, group_key, population
from caviar.train.data import load
from caviar.train.optim import StackedOptimizer
from caviar.train.population import Population, _int32, _uniform

METRICS = ("train_loss", "val_loss", "val_acc", "test_acc", "best_val_acc", "lr")


@pytest.fixture(scope="module")
def data():
    return load("synthetic")


def train(data, members, model="mlp", checkpoints=None):
    """{key: [metrics per epoch]} of a population of `members` ((key, config) pairs)."""
    population = Population(data, model)
    for key, config in members:
        population.add(key, config, (checkpoints or {}).get(key))
    history = {key: [] for key, _ in members}
    while len(population):
        for key, metrics, _, _ in population.train_epoch():
            history[key].append(metrics)
    return history


def assert_same(a, b, tol=1e-5):
    assert [m["epoch"] for m in a] == [m["epoch"] for m in b]
    for x, y in zip(a, b, strict=True):
        for name in METRICS:
            assert x[name] == pytest.approx(y[name], abs=tol, nan_ok=True), name
        assert x["diverged"] == y["diverged"]


# Every per-member knob, several widths (padded to the widest), one member leaving early.
MEMBERS = [
    {"lr": 3e-3, "hidden": 32, "seed": 1},
    {"lr": 1e-2, "hidden": 64, "dropout": 0.3, "seed": 2, "weight_decay": 1e-3},
    {"lr": 1e-3, "hidden": 48, "label_smoothing": 0.1, "mixup_alpha": 0.4, "seed": 3},
    {"lr": 5e-3, "clip_norm": 0.5, "seed": 4, "schedule": "cosine", "warmup_epochs": 1},
    {"lr": 5e-3, "hidden": 16, "clip_value": 0.05, "seed": 5, "max_epochs": 2, "beta1": 0.8},
    {"lr": 2e-3, "schedule": "plateau", "plateau_patience": 0, "gamma": 0.5, "seed": 6},
]


@pytest.mark.parametrize(
    "shared",
    [
        {"optimizer": "adamw"},
        {"optimizer": "adam", "batch_norm": True, "activation": "gelu", "init": "kaiming"},
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "accumulate": 2},
    ],
    ids=["adamw", "adam-batchnorm", "sgd-nesterov-accumulate"],
)
def test_each_member_trains_as_it_would_alone(data, shared):
    configs = [{"max_epochs": 3, "batch_size": 32, **shared, **c} for c in MEMBERS]
    together = train(data, list(enumerate(configs)))
    for i, config in enumerate(configs):
        assert_same(together[i], train(data, [(i, config)])[i])
    assert len(together[4]) == 2 and len(together[0]) == 3


def test_cnn_members_of_different_widths_train_as_alone(data):
    configs = [
        {"max_epochs": 2, "channels": c, "depth": 2, "dropout": d, "seed": i, "batch_norm": True}
        for i, (c, d) in enumerate([(8, 0.0), (16, 0.2), (12, 0.1)])
    ]
    together = train(data, list(enumerate(configs)), model="cnn")
    for i, config in enumerate(configs):
        assert_same(together[i], train(data, [(i, config)], model="cnn")[i])


@pytest.mark.parametrize(
    "model, shared",
    [
        ("mlp", {"batch_norm": True, "mixup_alpha": 0.4, "dropout": 0.2, "accumulate": 3}),
        ("mlp", {"optimizer": "sgd", "momentum": 0.9, "label_smoothing": 0.1, "dropout": 0.3}),
        ("cnn", {"channels": 8, "dropout": 0.1, "batch_norm": True}),
    ],
    ids=["mlp-batchnorm-mixup-accumulate", "mlp-sgd-smoothing", "cnn-batchnorm"],
)
@pytest.mark.parametrize("k", [1, 3])
def test_traced_steps_compute_what_eager_steps_do(data, monkeypatch, model, shared, k):
    """Past TRACE_AFTER steps of one shape a population replays a traced graph of its
    gradient computation; members train as they did eagerly (batch norm's running statistics,
    which the validation metrics use, included)."""
    configs = [
        {"max_epochs": 3, "batch_size": 32, "lr": 3e-3 * (i + 1), "seed": i, **shared}
        for i in range(k)
    ]
    eager = train(data, list(enumerate(configs)), model)
    traces = []
    monkeypatch.setattr(population, "TRACE_AFTER", 2)
    monkeypatch.setattr(population, "make_fx", lambda f: traces.append(f) or make_fx(f))
    traced = train(data, list(enumerate(configs)), model)
    assert traces  # the full batch's shape and the last, smaller one
    for i in range(k):
        assert_same(traced[i], eager[i])


def test_a_member_that_joins_later_or_resumes_trains_as_alone(data):
    a = {"max_epochs": 4, "lr": 3e-3, "hidden": 32, "dropout": 0.2, "seed": 1}
    b = {"max_epochs": 3, "lr": 1e-2, "hidden": 64, "dropout": 0.1, "seed": 2}
    population = Population(data, "mlp")
    population.add("a", a)
    first = population.train_epoch()
    checkpoint_a = first[0][2]
    population.add("b", b)  # joins after a's first epoch
    history = {"a": [first[0][1]], "b": []}
    while len(population):
        for key, metrics, _, _ in population.train_epoch():
            history[key].append(metrics)
    assert_same(history["b"], train(data, [("b", b)])["b"])
    assert_same(history["a"], train(data, [("a", a)])["a"])
    # a, resumed from its epoch-1 checkpoint in a population of its own, goes on the same way
    resumed = train(data, [("a", a)], checkpoints={"a": checkpoint_a})["a"]
    assert_same(resumed, history["a"][1:])


def test_a_diverging_member_leaves_and_the_others_go_on(data):
    good = {"max_epochs": 3, "optimizer": "sgd", "lr": 0.05, "seed": 1}
    bad = {**good, "lr": 1e6, "momentum": 0.99, "seed": 2}
    history = train(data, [("good", good), ("bad", bad)])
    assert history["bad"][-1]["diverged"] and len(history["bad"]) < 3
    assert_same(history["good"], train(data, [("good", good)])["good"])


def test_padded_units_stay_zero(data):
    population = Population(data, "mlp")
    population.add("narrow", {"hidden": 8, "max_epochs": 5, "weight_decay": 0.1, "dropout": 0.5})
    population.add("wide", {"hidden": 32, "max_epochs": 5, "seed": 1})
    for _ in range(2):
        population.train_epoch()
    first, first_bias, second = list(population.params.values())[:3]  # [member, out, in]
    assert first.shape[1] == 32 and first[0, 8:].abs().max() == 0
    assert first_bias[0, 8:].abs().max() == 0 and second[0][:, 8:].abs().max() == 0
    assert first[0, :8].abs().min() > 0


def test_members_must_share_the_shape_of_the_computation(data):
    population = Population(data, "mlp")
    population.add(0, {"batch_size": 32})
    with pytest.raises(ValueError, match=r"differs in shape .*'batch_size': \(64, 32\)"):
        population.add(1, {"batch_size": 64})
    assert group_key({"hidden": 10, "lr": 1}) == group_key({"hidden": 99, "lr": 2})


@pytest.mark.parametrize(
    "kind, nesterov", [("adamw", False), ("adam", False), ("sgd", True), ("sgd", False)]
)
def test_stacked_optimizer_matches_torch_optim(kind, nesterov):
    """Both update paths give what torch.optim gives each member alone."""
    hps = [
        {**DEFAULTS, "weight_decay": wd, "momentum": m, "beta1": b1, "beta2": 0.99, "eps": 1e-7}
        for wd, m, b1 in ((0.0, 0.0, 0.9), (1e-2, 0.9, 0.8), (0.1, 0.5, 0.95))
    ]
    lrs = [1e-2, 3e-2, 1e-3]
    start = [torch.randn(3, 5, 4), torch.randn(3, 4)]
    grads = [[torch.randn(p.shape) for p in start] for _ in range(20)]
    for batched in (False, True):
        params = [p.clone().requires_grad_() for p in start]
        for p in params:
            p.grad = torch.zeros_like(p)
        opt = StackedOptimizer(kind, nesterov, hps, "cpu", batched)
        opt.init_state(params)
        for g in grads:
            for p, gp in zip(params, g, strict=True):
                p.grad.copy_(gp)
            opt.step(params, lrs, torch.tensor(lrs))
        for j, hp in enumerate(hps):
            alone = [p[j].clone().requires_grad_() for p in start]
            if kind == "sgd":
                reference = torch.optim.SGD(
                    alone,
                    lr=lrs[j],
                    momentum=hp["momentum"],
                    nesterov=nesterov and hp["momentum"] > 0,
                    weight_decay=hp["weight_decay"],
                )
            else:
                cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
                reference = cls(
                    alone,
                    lr=lrs[j],
                    betas=(hp["beta1"], hp["beta2"]),
                    eps=hp["eps"],
                    weight_decay=hp["weight_decay"],
                )
            for g in grads:
                for p, gp in zip(alone, g, strict=True):
                    p.grad = gp[j].clone()
                reference.step()
            for p, a in zip(params, alone, strict=True):
                assert torch.allclose(p[j], a, atol=1e-6), (kind, batched, j)


def test_checkpoint_holds_only_the_members_own_unpadded_slice(data):
    population = Population(data, "mlp")
    population.add("narrow", {"hidden": 8, "max_epochs": 1})
    population.add("wide", {"hidden": 32, "max_epochs": 1, "seed": 1})
    (_, _, narrow, _), _ = population.train_epoch()
    assert narrow["model"]["1.weight"].shape == (8, 20)
    assert narrow["optimizer"]["state"][0]["exp_avg"].shape == (8, 20)
    assert narrow["arch"]["hp"]["hidden"] == 8
    assert math.isfinite(narrow["best_val_acc"])


def test_the_noise_hash_is_lowbias32_on_unsigned_32_bit_values():
    """Dropout and mixup noise: the int32 hash equals lowbias32 computed on Python ints, for
    keys on both sides of 2**31 (where int32 turns negative)."""

    def lowbias32(x: int) -> int:
        m = 0xFFFFFFFF
        x &= m
        x ^= x >> 16
        x = (x * 0x7FEB352D) & m
        x ^= x >> 15
        x = (x * 0x846CA68B) & m
        return x ^ (x >> 16)

    keys = [0, 7, 2**31 - 1, 2**31, 3_141_592_653, 2**32 - 1]
    u = _uniform(_int32(keys), 3, 5)
    for j, key in enumerate(keys):
        for r in range(3):
            for c in range(5):
                want = (lowbias32(lowbias32((r << 16) + c) ^ key) >> 8) / 2**24
                assert u[j, r, c].item() == want


def test_a_population_that_has_not_traced_leaves_torch_dynamo_unimported():
    """torch._dynamo takes 3-4 s of CPU to import, at the start of every trial process: only
    tracing a step (after TRACE_AFTER steps) may pay it, not building or training a population
    of models with dropout and batch norm."""
    code = (
        "from caviar.train.data import load\n"
        "from caviar.train.population import Population\n"
        "data = load('synthetic')\n"
        "for model in ('mlp', 'cnn'):\n"
        "    p = Population(data, model)\n"
        "    for seed in range(2):\n"
        "        p.add(seed, {'max_epochs': 1, 'dropout': 0.2, 'batch_norm': True, 'seed': seed})\n"
        "    p.train_epoch()\n"
    )
    assert imported_after(code, {"torch._dynamo"}) == set()
