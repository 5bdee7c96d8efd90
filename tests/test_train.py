"""The built-in train function, run in-process (no Ray)."""

import functools
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from caviar import session
from caviar.spec import parse_yaml
from caviar.train import DEFAULTS, KNOBS, models
from caviar.train.data import EXAMPLES, load, split_sizes
from caviar.train.loop import train
from caviar.train.population import Population
from tests.conftest import caviar_cli


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def run(data, config, checkpoint=None):
    fn = functools.partial(train, data=data, model="mlp")
    s = session.Session("val_acc", checkpoint=checkpoint)
    return session.run(fn, config, s)


def test_data_split_is_fixed_and_standardized(digits):
    again = load("digits")
    assert (digits.x_val == again.x_val).all()
    assert abs(digits.x_train.mean()) < 1e-3
    assert len(digits.x_train) + len(digits.x_val) + len(digits.x_test) == 1797


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_learns_digits(digits, optimizer):
    config = {"max_epochs": 5, "optimizer": optimizer, "lr": 0.05 if optimizer == "sgd" else 3e-3}
    results = run(digits, config).results
    assert [r["epoch"] for r in results] == [1, 2, 3, 4, 5]
    assert results[-1]["val_acc"] > 0.85
    assert set(results[-1]) >= {"train_loss", "val_loss", "val_acc", "lr", "samples_per_s"}


def test_resume_from_checkpoint_gives_the_same_numbers(digits):
    config = {"max_epochs": 4, "dropout": 0.2, "batch_size": 32}
    straight = run(digits, config).results
    first_half = run(digits, {**config, "max_epochs": 2})
    resumed = run(digits, config, checkpoint=first_half.get_checkpoint()).results
    assert [r["epoch"] for r in resumed] == [3, 4]
    for a, b in zip(straight[2:], resumed, strict=True):
        assert a["val_loss"] == b["val_loss"] and a["train_loss"] == b["train_loss"]


def test_a_trial_restored_from_its_last_epoch_trains_no_further(digits):
    """Ray may restore a trial from the checkpoint of its last epoch (paused just then):
    nothing is left to train, and nothing past max_epochs is reported."""
    config = {"max_epochs": 2}
    done = run(digits, config)
    again = run(digits, config, checkpoint=done.get_checkpoint())
    assert again.results == [] and again.last_epoch == 2


def test_huge_learning_rate_diverges(digits):
    results = run(
        digits, {"max_epochs": 10, "optimizer": "sgd", "lr": 1e6, "momentum": 0.99}
    ).results
    assert results[-1]["diverged"] is True
    assert len(results) < 10


@pytest.fixture(scope="module")
def synthetic():
    return load("synthetic")


BASE = {"max_epochs": 2, "hidden": 32}
STEPS = 30  # optimizer steps per epoch: synthetic's 1920 training examples in batches of 64


def lrs_are(*factors):
    """The reported lr of each epoch (that of its last step) is lr times these factors."""

    def check(data, config, trained):
        expected = [config.get("lr", DEFAULTS["lr"]) * f for f in factors]
        assert [r["lr"] for r in trained.results] == pytest.approx(expected, rel=1e-6)

    return check


def cosine(step, warmup, total):
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def one_cycle(step, total):
    up = int(0.3 * total)
    return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * (step - up) / (total - up)))


def plateau_cuts_the_lr(data, config, trained):
    # The loss cannot improve at lr 1e-8: the lr is cut by gamma, never raised.
    lrs = [r["lr"] / config["lr"] for r in trained.results]
    assert all(math.log10(lr) == pytest.approx(round(math.log10(lr))) for lr in lrs)  # gamma 0.1
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < lrs[0]


def differs_without(*names):
    """Training with the knob ends elsewhere than without it (the others as they are)."""

    def check(data, config, trained):
        without = run(data, {k: v for k, v in config.items() if k not in names}).results
        assert trained.results[-1]["train_loss"] != without[-1]["train_loss"]
        assert trained.results[-1]["val_loss"] != without[-1]["val_loss"]

    return check


def weight_norm(model_state):
    return math.sqrt(sum(float(t.norm() ** 2) for n, t in model_state.items() if "weight" in n))


def decays_weights(data, config, trained):
    without = run(data, {**config, "weight_decay": 0.0})
    assert weight_norm(trained.get_checkpoint()["model"]) < 0.98 * weight_norm(
        without.get_checkpoint()["model"]
    )


def has_batch_norm(data, config, trained):
    state = trained.get_checkpoint()["model"]
    norms = [int(n.split(".")[0]) for n in state if n.endswith("running_mean")]
    assert len(norms) == config.get("depth", 2)
    # The layer before each norm has no bias: the norm's shift replaces it.
    for i in norms:
        assert f"{i - 1}.weight" in state and f"{i - 1}.bias" not in state


def has_linear_layers(count):
    def check(data, config, trained):
        state = trained.get_checkpoint()["model"]
        assert sum(t.dim() == 2 for n, t in state.items() if n.endswith("weight")) == count

    return check


def smoothing_floor(data, config, trained):
    # With targets (1 - e) one-hot + e uniform the loss is at least their entropy; without
    # smoothing the same training goes below it.
    e, k = config["label_smoothing"], data.num_classes
    p, q = 1 - e + e / k, e / k
    floor = -(p * math.log(p) + (k - 1) * q * math.log(q))
    assert min(r["train_loss"] for r in trained.results) >= floor
    plain = run(data, {**config, "label_smoothing": 0.0}).results
    assert plain[-1]["train_loss"] < floor - 0.1


def one_step_update(data, config):
    """The change of all weights in one optimizer step of plain SGD at lr 1 (the whole
    training split as one batch): minus the gradient, as clipping left it."""
    p = Population(data, "mlp", device="cpu")
    hp = {"optimizer": "sgd", "momentum": 0.0, "lr": 1.0, "batch_size": len(data.x_train)}
    p.add("m", {**config, **hp, "max_epochs": 2})
    before = [t.detach().clone() for t in p.params.values()]
    p.train_epoch()
    return torch.cat(
        [(t.detach() - b).flatten() for t, b in zip(p.params.values(), before, strict=True)]
    )


def clips_the_gradient(data, config, trained):
    free = one_step_update(data, {**config, "clip_norm": 0.0, "clip_value": 0.0})
    clipped = one_step_update(data, config)
    if config.get("clip_norm"):
        assert free.norm() > 2 * config["clip_norm"]
        assert clipped.norm() == pytest.approx(config["clip_norm"], rel=1e-4)
        assert torch.nn.functional.cosine_similarity(free, clipped, dim=0) > 0.9999
    else:
        assert free.abs().max() > 2 * config["clip_value"]
        assert clipped.abs().max() == pytest.approx(config["clip_value"], rel=1e-4)


def optimizer_steps(per_epoch):
    def check(data, config, trained):
        assert trained.get_checkpoint()["optimizer"]["steps"] == per_epoch * config["max_epochs"]

    return check


def runs_under_autocast(data, config, trained):
    def dtypes(precision):
        p = Population(data, "mlp", device="cpu")
        p.add("m", {**config, "precision": precision})
        seen = set()
        first = next(m for m in p.template.modules() if isinstance(m, nn.Linear))
        first.register_forward_hook(lambda module, args, out: seen.add(out.dtype))
        p.train_epoch()
        return seen

    assert dtypes("bf16") == {torch.bfloat16} and dtypes("fp32") == {torch.float32}


def stops_early(data, config, trained):
    # Nothing improves at lr 1e-8: the trial stops after `patience` epochs without progress.
    assert [r["epoch"] for r in trained.results] == list(range(1, config["patience"] + 2))
    assert config["max_epochs"] > config["patience"] + 1


KNOBS_AND_EFFECTS = [
    ({"optimizer": "sgd", "momentum": 0.9, "nesterov": True}, differs_without("nesterov")),
    ({"optimizer": "sgd", "momentum": 0.5}, differs_without("momentum")),
    ({"optimizer": "adam", "beta1": 0.8, "beta2": 0.99, "eps": 1e-6}, differs_without("beta1")),
    ({"optimizer": "adam", "beta2": 0.9}, differs_without("beta2")),
    ({"optimizer": "adam", "eps": 1e-3}, differs_without("eps")),
    ({"optimizer": "adamw", "weight_decay": 0.5}, decays_weights),
    ({"schedule": "step", "step_epochs": 1, "gamma": 0.5}, lrs_are(1, 0.5)),
    (
        {"schedule": "cosine", "warmup_epochs": 0.5},
        lrs_are(
            cosine(STEPS - 1, STEPS / 2, 2 * STEPS), cosine(2 * STEPS - 1, STEPS / 2, 2 * STEPS)
        ),
    ),
    ({"warmup_epochs": 2}, lrs_are(0.5, 1)),
    (
        {"schedule": "plateau", "plateau_patience": 0, "lr": 1e-8, "max_epochs": 3},
        plateau_cuts_the_lr,
    ),
    (
        {"schedule": "onecycle"},
        lrs_are(one_cycle(STEPS - 1, 2 * STEPS), one_cycle(2 * STEPS - 1, 2 * STEPS)),
    ),
    ({"lr_scaling": "linear", "base_batch_size": 32}, lrs_are(2, 2)),
    ({"lr_scaling": "sqrt", "base_batch_size": 256}, lrs_are(0.5, 0.5)),
    ({"lr_scaling": "linear", "accumulate": 2, "base_batch_size": 32}, lrs_are(4, 4)),
    ({"batch_norm": True, "activation": "gelu", "init": "kaiming"}, has_batch_norm),
    ({"activation": "tanh", "init": "xavier", "dropout": 0.3}, differs_without("dropout")),
    ({"activation": "tanh"}, differs_without("activation")),
    ({"init": "xavier"}, differs_without("init")),
    ({"activation": "leaky_relu", "init": "kaiming", "depth": 3}, has_linear_layers(4)),
    ({"label_smoothing": 0.5, "lr": 0.01}, smoothing_floor),
    ({"mixup_alpha": 0.4}, differs_without("mixup_alpha")),
    ({"clip_norm": 0.1}, clips_the_gradient),
    ({"clip_value": 0.01}, clips_the_gradient),
    ({"accumulate": 3}, optimizer_steps(STEPS // 3)),
    ({"batch_size": 128}, optimizer_steps(STEPS // 2)),
    ({"precision": "bf16"}, runs_under_autocast),
    ({"patience": 1, "lr": 1e-8, "max_epochs": 5}, stops_early),
    ({"seed": 1}, differs_without("seed")),
]


@pytest.mark.parametrize(
    "knob, effect",
    KNOBS_AND_EFFECTS,
    ids=[",".join(f"{a}={b}" for a, b in k.items()) for k, _ in KNOBS_AND_EFFECTS],
)
def test_each_knob_builds_and_trains(synthetic, knob, effect):
    config = {**BASE, **knob}
    trained = run(synthetic, config)
    results = trained.results
    assert results[-1]["train_loss"] < 2.0 and not results[-1]["diverged"]
    assert 0 < results[-1]["test_acc"] <= 1
    effect(synthetic, config, trained)


def test_every_knob_has_its_effect_tested():
    tested = {name for knob, _ in KNOBS_AND_EFFECTS for name in knob}
    # The widths and the cnn's knobs: test_model_knobs_shape_the_network.
    assert set(DEFAULTS) - tested == {"hidden", "channels", "kernel_size", "pool"}


def test_model_knobs_shape_the_network():
    def build(**knobs):
        torch.manual_seed(0)
        return models.build("mlp", (64,), 10, {**DEFAULTS, "hidden": 512, **knobs})

    def first_std(model):
        return float(
            next(m for m in model.modules() if isinstance(m, nn.Linear)).weight.detach().std()
        )

    plain = build()
    assert [m.out_features for m in plain.modules() if isinstance(m, nn.Linear)] == [512, 512, 10]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.modules())
    assert [type(m) for m in build(activation="gelu").modules()].count(nn.GELU) == 2
    # PyTorch's default init: uniform in +-1/sqrt(fan_in); kaiming (relu): normal with std
    # sqrt(2 / fan_in); xavier: uniform in +-gain sqrt(6 / (fan_in + fan_out)), gain sqrt(2).
    assert first_std(plain) == pytest.approx(1 / math.sqrt(64) / math.sqrt(3), rel=0.05)
    assert first_std(build(init="kaiming")) == pytest.approx(math.sqrt(2 / 64), rel=0.05)
    xavier = math.sqrt(2) * math.sqrt(6 / (64 + 512)) / math.sqrt(3)
    assert first_std(build(init="xavier")) == pytest.approx(xavier, rel=0.05)
    cnn = models.build("cnn", (40,), 10, {**DEFAULTS, "channels": 8, "kernel_size": 3})
    convs = [m for m in cnn.modules() if isinstance(m, nn.Conv1d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(8, (3,))] * 2
    pools = models.build("cnn", (40,), 10, {**DEFAULTS, "pool": "avg"}).modules()
    assert sum(isinstance(m, nn.AvgPool1d) for m in pools) == 2


@pytest.mark.parametrize("shape, task", [((40,), "mnist1d"), ((8, 8), "digits")])
def test_cnn_on_sequences_and_images(digits, shape, task):
    import numpy as np

    from caviar.train.data import split

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, *shape))
    y = (x.reshape(200, -1).mean(1) > 0).astype(int)
    data = split(x, y, None, None, 0, shape)
    fn = functools.partial(train, data=data, model="cnn")
    config = {"max_epochs": 2, "channels": 8, "depth": 3, "batch_norm": True, "pool": "avg"}
    results = session.run(fn, config, session.Session("val_acc")).results
    assert len(results) == 2 and results[-1]["val_acc"] > 0


def test_schedule_shapes():
    from caviar.train import DEFAULTS
    from caviar.train.optim import Schedule

    hp = {**DEFAULTS, "lr": 1.0, "max_epochs": 10}
    cosine = Schedule({**hp, "schedule": "cosine", "warmup_epochs": 1}, 10)
    assert cosine.lr(0) == pytest.approx(0.1) and cosine.lr(9) == pytest.approx(1.0)
    assert cosine.lr(55) == pytest.approx(0.5, abs=0.02) and cosine.lr(99) < 0.01
    step = Schedule({**hp, "schedule": "step", "step_epochs": 3, "gamma": 0.1}, 10)
    assert [step.lr(s) for s in (0, 29, 30, 60)] == pytest.approx([1, 1, 0.1, 0.01])
    one = Schedule({**hp, "schedule": "onecycle"}, 10)
    assert (
        one.lr(0) == pytest.approx(0.04) and one.lr(30) == pytest.approx(1.0) and one.lr(99) < 1e-3
    )
    plateau = Schedule({**hp, "schedule": "plateau", "plateau_patience": 1, "gamma": 0.5}, 10)
    for loss in (1.0, 1.0, 1.0):
        plateau.end_epoch(loss)
    assert plateau.lr(0) == 0.5
    scaled = Schedule({**hp, "lr_scaling": "sqrt", "batch_size": 256, "base_batch_size": 64}, 10)
    assert scaled.lr(0) == pytest.approx(2.0)


def test_early_stopping_with_patience(synthetic):
    results = run(synthetic, {"max_epochs": 30, "patience": 2, "lr": 0.05}).results
    assert len(results) < 30
    # The trial stops two epochs after its last improvement, and neither of them beat it.
    best = results[-1]["best_val_acc"]
    assert results[-3]["val_acc"] == best == max(r["val_acc"] for r in results)
    assert all(r["val_acc"] <= best for r in results[-2:])


def test_lr_find_suggests_a_learning_rate_inside_the_tested_range(mnist1d):
    from caviar.train.lr_find import lr_find

    result = lr_find(mnist1d, "mlp", {"optimizer": "adamw", "hidden": 128})
    assert 1e-7 < result.low < result.suggestion < result.high < 1.0
    assert 1e-4 <= result.suggestion <= 0.1  # where AdamW MLPs train on mnist1d
    assert min(result.losses) < result.losses[0]
    assert result.spec_line().startswith("lr: {loguniform: [")


def test_lr_find_suggests_a_learning_rate_below_where_the_loss_turns_up(digits):
    """On digits the loss falls to its lowest near lr 3e-2, then climbs with spikes to lr 1,
    where a last small dip was once the steepest descent: lr 1 was suggested."""
    from caviar.train.lr_find import lr_find

    result = lr_find(digits, "mlp", {"optimizer": "adamw"})
    lowest = result.lrs[int(np.argmin(result.losses))]
    assert result.lrs[-1] > 10 * lowest  # the test ran well past the lowest loss
    assert result.suggestion <= lowest


@pytest.fixture(scope="module")
def mnist1d():
    return load("mnist1d")


@pytest.mark.parametrize("task", ["mnist1d", "digits", "synthetic"])
def test_declared_task_sizes_are_what_the_loaders_give(request, task):
    data = request.getfixturevalue(task)
    examples, own_test = EXAMPLES[task]
    sizes = len(data.x_train), len(data.x_val), len(data.x_test)
    assert sizes == split_sizes(examples, own_test)
    assert sum(sizes) == examples + (own_test or 0)


def test_readme_knob_table_is_the_declaration():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme[readme.index("| knob | default | values | meaning |") :].split("\n\n")[0]
    rows = [[c.strip() for c in row.strip("|").split("|")] for row in table.splitlines()[2:]]
    assert [name.strip("`") for name, *_ in rows] == [k.name for k in KNOBS]
    for (_, default, values, meaning), knob in zip(rows, KNOBS, strict=True):
        assert parse_yaml(default) == knob.default, knob.name
        assert values == knob.values(), knob.name
        assert meaning == knob.meaning, knob.name


def test_lr_find_that_diverges_at_once_says_so(digits):
    from caviar.errors import LRFindError
    from caviar.train.lr_find import lr_find

    with pytest.raises(LRFindError, match=r"the training loss .* at step \d+ \(lr 1e\+03\)"):
        lr_find(digits, "mlp", {}, min_lr=1e3, max_lr=1e4)


def test_cli_lr_find_that_diverges_at_once_exits_2_with_one_line(write_spec):
    # A huge weight decay blows the loss up at the smallest learning rate: there is no curve.
    fixed = {"optimizer": "sgd", "weight_decay": 1e10}
    path = write_spec({"train": {"task": "digits", "max_epochs": 2, "fixed": fixed}})
    out = caviar_cli("lr-find", str(path))
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert re.fullmatch(
        r"caviar: error: lr-find: the training loss blew up at step 2 \(lr 1.2e-07\), before "
        r"the range test had two points to compare; .*check its fixed and middle-of-domain "
        r"values .*, or start lower than min_lr=1e-07",
        line,
    ), line


def test_cli_lr_find_whose_plot_cannot_be_written_still_prints_its_suggestion(write_spec, tmp_path):
    path = write_spec({"train": {"task": "digits", "max_epochs": 2}})
    (tmp_path / "a-file").write_text("")
    out = caviar_cli("lr-find", str(path), "--out", str(tmp_path / "a-file" / "lr.png"))
    assert out.returncode == 2, out.stderr
    assert "suggested lr: " in out.stdout and "range for the spec:  lr: {loguniform" in out.stdout
    assert out.stderr == (
        f"caviar: error: --out: cannot write '{tmp_path / 'a-file' / 'lr.png'}' (Not a "
        "directory); pass a writable path\n"
    )


def test_plateau_counts_the_first_epoch_as_an_improvement():
    from caviar.train import DEFAULTS
    from caviar.train.optim import Schedule

    hp = {**DEFAULTS, "lr": 1.0, "schedule": "plateau", "plateau_patience": 1, "gamma": 0.5}
    plateau = Schedule(hp, 10)
    plateau.end_epoch(1.0)  # the first epoch sets the best
    plateau.end_epoch(1.0)  # one epoch without improvement: within patience
    assert plateau.lr(0) == 1.0
    plateau.end_epoch(1.0)
    assert plateau.lr(0) == 0.5


def test_batch_norm_with_a_last_batch_of_one_trains(digits):
    assert len(digits.x_train) % 3 == 1
    results = run(digits, {"max_epochs": 1, "batch_norm": True, "batch_size": 3}).results
    assert results[-1]["val_acc"] > 0.5
