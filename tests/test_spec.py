import re
from pathlib import Path

import numpy as np
import pytest

from caviar.errors import SpecError
from caviar.space import Float, Int
from caviar.spec import load_spec, parse_spec, read_yaml, spec_to_dict
from tests.conftest import QUICK_SPEC, caviar_cli


def problems(raw=None, **updates):
    with pytest.raises(SpecError) as e:
        parse_spec({**QUICK_SPEC, **updates} if raw is None else raw)
    return e.value.problems


def one_problem(**updates):
    found = problems(**updates)
    assert len(found) == 1, found
    return found[0]


def test_quickstart_example_is_valid():
    spec = load_spec("examples/quickstart.yaml")
    assert spec.metric == "val_acc" and spec.space.searched[0] == "lr"
    assert dict(spec.space)["lr"] == Float(1e-4, 3e-2, "log")
    assert dict(spec.space)["hidden"] == Int(32, 512)


@pytest.mark.parametrize("path", sorted(Path("examples").glob("*.yaml")), ids=str)
def test_every_example_spec_is_valid(path):
    load_spec(path)  # raises, listing every problem, if it is not


def test_exponent_without_dot_is_a_number(write_spec):
    path = write_spec(text="a: 1e-4\nb: -2E+3\nc: 1.5e-2\nd: 10\ne: 1e\nf: .5\n")
    assert read_yaml(path) == {"a": 1e-4, "b": -2000.0, "c": 0.015, "d": 10, "e": "1e", "f": 0.5}


def test_spec_round_trips_through_its_dict():
    spec = parse_spec(QUICK_SPEC)
    assert parse_spec(spec_to_dict(spec)) == spec


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="nope.yaml: no such file; check the path"):
        load_spec(tmp_path / "nope.yaml")


def test_yaml_syntax_error_names_the_line(write_spec):
    path = write_spec(text="name: x\nspace: {lr: [1, 2\n")
    with pytest.raises(SpecError, match=r"spec.yaml:\d+:\d+: YAML syntax error"):
        load_spec(path)


@pytest.mark.parametrize(
    "text, where, key, first",
    [
        (
            "name: x\nspace: {lr: {uniform: [0, 1]}}\nspace: {wd: {uniform: [0, 1]}}\n",
            "3:1",
            "space",
            2,
        ),
        ("name: x\nspace: {lr: {uniform: [0, 1]}, lr: {uniform: [0, 2]}}\n", "2:32", "lr", 2),
    ],
    ids=["top-level", "in a flow mapping"],
)
def test_a_key_given_twice_is_refused_not_silently_dropped(write_spec, text, where, key, first):
    with pytest.raises(SpecError) as e:
        load_spec(write_spec(text=text))
    assert str(e.value).endswith(
        f"spec.yaml:{where}: YAML: {key!r} is given twice in one mapping (first at line {first}), "
        "and only the last would count; keep one"
    )


def test_a_merge_key_may_be_overridden(write_spec):
    """`<<: *base` then a key of the base: YAML's override, not a repeat."""
    text = "b: &b {lr: {uniform: [0, 1]}}\nspace: {<<: *b, lr: {uniform: [0, 2]}}\n"
    assert read_yaml(write_spec(text=text))["space"] == {"lr": {"uniform": [0, 2]}}


@pytest.mark.parametrize(
    "updates, message",
    [
        (
            {"scheduler": {"name": "asha", "grace": 2}},
            r"scheduler.grace: unknown key; did you mean 'grace_period'\? \(valid keys: name, ",
        ),
        ({"budgett": {}}, r"budgett: unknown key; did you mean 'budget'\?"),
        (
            {"budget": 5},  # pydantic said "a dictionary or an instance of BudgetSpec"
            r"budget: expected a mapping of num_samples, max_concurrent, time_budget_s, "
            r"trial_time_s, found 5",
        ),
        (
            {"budget": {"num_samples": 0}},
            r"budget.num_samples: expected greater than or equal to 1, found 0",
        ),
        (
            {"budget": {"num_samples": "many"}},
            r"budget.num_samples: expected a valid integer.*found 'many'",
        ),
        ({"mode": "maximize"}, r"mode: expected 'min' or 'max', found 'maximize'"),
        ({"space": {"lr": {"uniform": [1, 0]}}}, r"space.lr: uniform needs low < high"),
        (
            {"space": {"lr": {"loguniform": [0, 1]}}},
            r"space.lr: loguniform is on a log scale and needs low > 0",
        ),
        ({"space": {"bs": {"choice": []}}}, r"space.bs: choice needs a non-empty list"),
        (
            {"metric": "val_accuracy"},
            r"metric: the built-in train function does not report 'val_accuracy'; did you mean 'val_acc'\?",
        ),
        (
            {"space": {"learning_rate": 0.1}},
            r"space.learning_rate: the built-in train function has no hyperparameter",
        ),
        (
            {"searcher": {"name": "randon"}},
            r"searcher.name: unknown searcher 'randon'; did you mean 'random'\?",
        ),
        (
            {"train": {"task": "cifar", "max_epochs": 3}},
            r"train.task: unknown task 'cifar' \(expected one of mnist1d, digits, synthetic, file\)",
        ),
        (
            {"train": {"function": "not a path", "max_epochs": 3}},
            r"train.function: expected \"module:function\"",
        ),
        (
            {"name": "a/b"},
            r"name: expected letters, digits, '_', '.' or '-' \(it names the run directory\), found 'a/b'",
        ),
        (
            {"scheduler": {"name": "asha", "grace_period": 10}},
            r"scheduler.grace_period: must be <= train.max_epochs \(4\), found 10",
        ),
        # A reduction factor of 1 made `caviar plan` list rungs for ever.
        (
            {"scheduler": {"name": "caviar", "reduction_factor": 1}},
            r"scheduler.reduction_factor: expected greater than 1, found 1",
        ),
        # Rank correlations are at most 1: a trust of 2 would never stop a trial, silently.
        (
            {"scheduler": {"name": "caviar", "trust": 2}},
            r"scheduler.trust: expected less than or equal to 1, found 2",
        ),
        (
            {"scheduler": {"name": "caviar", "min_pairs": 2}},
            r"scheduler.min_pairs: expected greater than or equal to 3, found 2",
        ),
        (
            {"scheduler": {"name": "pbt", "quantile_fraction": 0.9}},
            r"scheduler.quantile_fraction: expected less than or equal to 0.5, found 0.9",
        ),
        ({"space": {"lr": 0.1, "max_epochs": 3}}, r"space.max_epochs: set it as train.max_epochs"),
        (
            {"train": {"task": "digits", "model": "resnet"}},
            r"train.model: unknown model 'resnet' \(expected one of mlp, cnn\)",
        ),
        (
            {
                "space": {"optimizer": {"choice": ["sgd", "adamm"]}},
                "train": {"task": "digits", "max_epochs": 4},
            },
            r"space.optimizer: unknown optimizer 'adamm'; did you mean 'adam'\? \(expected one of sgd, adam, adamw\)",
        ),
        (
            {"train": {"task": "digits", "fixed": {"schedule": "linear"}}},
            r"train.fixed.schedule: unknown schedule 'linear' \(expected one of constant, step, cosine, plateau, onecycle\)",
        ),
        (
            {"space": {"batch_size": {"choice": [64, 4096]}}},
            r"space.batch_size: expected batch_size >= 1 and <= 1150 \(the training split's size\), found 4096",
        ),
        (
            {"space": {"dropout": {"uniform": [0.0, 1.0]}}},
            r"space.dropout: expected dropout >= 0 and < 1, found 1.0",
        ),
        (
            {"metric": "test_acc"},
            r"metric: test_acc scores the test split, which must never pick trials",
        ),
        ({"train": {"task": "file", "max_epochs": 2}}, r"train.data: task 'file' needs train.data"),
        (
            {"budget": {"num_samples": 10**9}},
            r"budget.num_samples: at most 100,000 trials per sweep .*found 1,000,000,000; split the sweep",
        ),
        (
            {"train": {"task": "digits", "max_epochs": 10**9}, "scheduler": {"name": "fifo"}},
            r"train.max_epochs: 1,000,000,000 epochs with no budget.time_budget_s would run for ever",
        ),
        ({"max_failures": -1}, r"max_failures: expected greater than or equal to 0, found -1"),
        ({"resources": {"fuse": 0}}, r"resources.fuse: expected greater than or equal to 1"),
        (
            {"resources": {"fuse": 8}, "scheduler": {"name": "hyperband"}},
            r"scheduler.name: scheduler 'hyperband' pauses trials, which fused trials cannot",
        ),
        (
            {
                "resources": {"fuse": 8},
                "train": {"function": "mytrain:train", "max_epochs": 4},
                "metric": "score",
                "space": {"x": {"uniform": [0, 1]}},
            },
            r"resources.fuse: fused trials train the built-in train function's models",
        ),
        ({"name": ".."}, r"name: expected letters, digits"),
        (
            # trials.parquet's error column would overwrite the metric's last value
            {
                "train": {"function": "mytrain:train", "max_epochs": 4},
                "metric": "error",
                "mode": "min",
                "space": {"x": {"uniform": [0, 1]}},
            },
            r"metric: 'error' is a name that caviar's tables or Ray Tune use for their own \(the "
            r"trial's error\); report the metric under a name of yours",
        ),
    ],
)
def test_each_bad_input_gets_one_line_naming_the_field(updates, message):
    problem = one_problem(**updates)
    assert "\n" not in problem
    assert re.search(message, problem), problem


def test_every_problem_is_listed_at_once():
    found = problems(
        mode="up", budget={"num_samples": 0}, space={"lr": {"uniform": [2, 1]}, "x": {"choice": []}}
    )
    fields = sorted(p.split(":")[0] for p in found)
    assert fields == ["budget.num_samples", "mode", "space.lr", "space.x"]


def test_missing_required_keys():
    found = problems(raw={"name": "x", "space": {"lr": 0.1}})
    assert "metric: missing; this key is required" in found
    assert "train: missing; this key is required" in found


@pytest.mark.parametrize(
    "arrays, message",
    [
        (
            {"x": np.zeros((100, 5)), "y": np.zeros(99, dtype=int)},
            r"'y' must be one label per example, shape \(100,\), found \(99,\)",
        ),
        (
            {"x": np.zeros(100), "y": np.zeros(100, dtype=int)},
            r"'x' must be \(examples, features...\) with at least 10 examples, found shape \(100,\)",
        ),
        (
            {"x": np.zeros((100, 5)), "y": np.zeros(100)},
            r"'y' must hold integer class labels 0..K-1, found float64",
        ),
        ({"features": np.zeros((100, 5))}, r"needs arrays 'x' and 'y', found \['features'\]"),
        (
            {
                "x": np.zeros((100, 5)),
                "y": np.zeros(100, dtype=int),
                "x_test": np.zeros((10, 4)),
                "y_test": np.zeros(10, dtype=int),
            },
            r"x_test examples have shape \(4,\) but x examples have \(5,\)",
        ),
    ],
)
def test_data_file_with_wrong_shapes(tmp_path, arrays, message):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    found = problems(train={"task": "file", "data": str(path), "max_epochs": 2}, space={"lr": 0.1})
    assert len(found) == 1 and re.search(message, found[0]), found
    assert found[0].startswith("train.data: ")


def test_data_file_parquet_needs_its_label_column(tmp_path):
    import pandas as pd

    pd.DataFrame({"a": range(20), "b": range(20), "target": [0, 1] * 10}).to_parquet(
        tmp_path / "d.parquet"
    )
    found = problems(
        train={"task": "file", "data": str(tmp_path / "d.parquet"), "max_epochs": 2},
        space={"lr": 0.1},
    )
    assert found == [
        f"train.data: {tmp_path / 'd.parquet'} has no label column 'label' (columns: a, b, target); set train.label"
    ]
    spec = parse_spec(
        {
            **QUICK_SPEC,
            "train": {
                "task": "file",
                "data": str(tmp_path / "d.parquet"),
                "label": "target",
                "max_epochs": 2,
            },
            "space": {"lr": 0.1, "batch_size": 8},
        }
    )
    assert spec.train.label == "target"


def test_cli_bad_spec_exits_2_with_one_line_per_problem_before_ray(write_spec):
    path = write_spec({"mode": "up", "budget": {"num_samples": 0}})
    for command in ("validate", "run"):
        out = caviar_cli(command, str(path), without_ray=True)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert lines == [
            "caviar: error: mode: expected 'min' or 'max', found 'up'",
            "caviar: error: budget.num_samples: expected greater than or equal to 1, found 0",
        ]
        assert "Traceback" not in out.stderr


def test_cli_validate_ok(write_spec):
    out = caviar_cli("validate", str(write_spec()), without_ray=True)
    assert out.returncode == 0, out.stderr
    assert "ok: sweep 't', 8 trials of digits, searching lr, hidden, batch_size" in out.stdout


def test_cli_unimportable_user_function_exits_2_before_ray(write_spec, tmp_path):
    path = write_spec(
        {
            "train": {"function": "nosuchmodule:train", "max_epochs": 2},
            "space": {"x": {"uniform": [0, 1]}},
            "metric": "score",
        }
    )
    out = caviar_cli(
        "run", str(path), "--storage", str(tmp_path / "runs"), cwd=tmp_path, without_ray=True
    )
    assert out.returncode == 2
    assert "train.function: cannot import 'nosuchmodule:train' (ModuleNotFoundError" in out.stderr


def test_problems_of_every_stage_are_listed_in_one_pass():
    # Unknown keys and bad values (pydantic's stage) and the checks between fields (a task's
    # name, the built-in function's values) used to be reported in two rounds.
    found = problems(
        budgett={},
        scheduler={"name": "asha", "grace_period": "soon"},
        train={"task": "mnist1dd", "max_epochs": 4, "fixed": {"gamma": -1}},
        space={"lr": {"uniform": [2, 1]}, "dropout": 1.5},
    )
    assert sorted(p.split(":")[0] for p in found) == [
        "budgett",
        "scheduler.grace_period",
        "space.dropout",
        "space.lr",
        "train.fixed.gamma",
        "train.task",
    ], found


def test_a_field_that_fails_is_not_judged_again_by_its_default():
    # train.max_epochs fails; its default (20) must not make grace_period 10 look fine or
    # 30 look wrong, and a missing metric must not be reported as an unknown one.
    found = problems(
        train={"task": "digits", "max_epochs": "many"},
        scheduler={"name": "asha", "grace_period": 30},
    )
    assert [p.split(":")[0] for p in found] == ["train.max_epochs"], found
    found = problems(raw={k: v for k, v in QUICK_SPEC.items() if k != "metric"})
    assert found == ["metric: missing; this key is required"]


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("base_batch_size", 0, "expected base_batch_size >= 1, found 0"),
        ("step_epochs", 0, "expected step_epochs >= 1, found 0"),
        ("gamma", -0.1, "expected gamma > 0, found -0.1"),
        ("gamma", 0, "expected gamma > 0, found 0"),
        ("eps", 0.0, "expected eps > 0, found 0.0"),
        ("clip_norm", -1.0, "expected clip_norm >= 0, found -1.0"),
        ("clip_value", -0.5, "expected clip_value >= 0, found -0.5"),
        ("plateau_patience", -1, "expected plateau_patience >= 0, found -1"),
        ("patience", -2, "expected patience >= 0, found -2"),
        ("lr", 0, "expected lr > 0, found 0"),
        ("lr", float("inf"), "expected a finite lr > 0, found inf"),
        ("seed", -1, "expected seed >= 0 and <= 18446744073709551615, found -1"),
        (
            "seed",
            1.5,
            "expected an integer seed >= 0 and <= 18446744073709551615, found 1.5",
        ),
        ("hidden", 0, "expected hidden >= 1, found 0"),
        ("kernel_size", 2.5, "expected an integer kernel_size >= 1, found 2.5"),
        ("beta2", 1.0, "expected beta2 >= 0 and < 1, found 1.0"),
        ("label_smoothing", 1, "expected label_smoothing >= 0 and < 1, found 1"),
        ("mixup_alpha", -0.2, "expected mixup_alpha >= 0, found -0.2"),
        ("warmup_epochs", "two", "expected warmup_epochs >= 0, found 'two'"),
    ],
)
def test_values_that_would_crash_every_trial_are_refused(name, value, message):
    problem = one_problem(
        train={"task": "digits", "max_epochs": 4, "fixed": {name: value}},
        space={"dropout": {"uniform": [0.0, 0.5]}},
    )
    assert problem == f"train.fixed.{name}: {message}"


@pytest.mark.parametrize(
    "domain, message",
    [
        ({"uniform": [-0.5, 0.5]}, "space.gamma: expected gamma > 0, found -0.5"),
        ({"choice": [0.1, 0.0]}, "space.gamma: expected gamma > 0, found 0.0"),
    ],
)
def test_searched_values_are_checked_at_both_ends(domain, message):
    assert one_problem(space={"gamma": domain}) == message


def test_integer_knobs_take_integer_domains():
    assert one_problem(space={"hidden": {"uniform": [16, 64]}}) == (
        "space.hidden: expected integer values of hidden, found {'uniform': [16.0, 64.0]}; "
        "use randint or lograndint"
    )
    parse_spec({**QUICK_SPEC, "space": {"hidden": {"quniform": [16, 64, 8]}}})


def test_every_knob_default_is_allowed_by_its_declaration():
    from caviar.train import KNOBS

    for knob in KNOBS:
        assert knob.choices is not None or knob.low is not None, knob.name
        assert knob.accepts(knob.default), knob.name


def test_batch_size_is_bounded_by_each_tasks_training_split():
    from caviar.train.data import split_sizes

    assert split_sizes(1797, None) == (1150, 288, 359)  # digits: a test split held out
    assert split_sizes(4000, 1000) == (3200, 800, 1000)  # mnist1d: its own test split
    for task, size in (("mnist1d", 3200), ("digits", 1150), ("synthetic", 1920)):
        train = {"task": task, "max_epochs": 4}
        parse_spec({**QUICK_SPEC, "train": train, "space": {"batch_size": size}})
        problem = one_problem(train=train, space={"batch_size": size + 1})
        assert f"<= {size} (the training split's size)" in problem


def test_validation_reads_only_the_headers_of_a_data_file(tmp_path, monkeypatch):
    import pandas as pd

    from caviar.train import data

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(100, 3)), rng.integers(0, 2, 100)
    np.savez_compressed(tmp_path / "d.npz", x=x, y=y, x_test=x[:30], y_test=y[:30])
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": y}).to_parquet(tmp_path / "d.parquet")

    def no_loading(*args, **kwargs):
        raise AssertionError("validation loaded the data")

    monkeypatch.setattr(np, "load", no_loading)
    monkeypatch.setattr("pyarrow.parquet.read_table", no_loading)
    monkeypatch.setattr(data, "read_file", no_loading)
    # .npz: 100 examples and a test split of its own, 20 for validation; .parquet: 100
    # examples, 20 held out for testing, 16 for validation.
    for name, train_size in (("d.npz", 80), ("d.parquet", 64)):
        train = {"task": "file", "data": str(tmp_path / name), "max_epochs": 2}
        parse_spec({**QUICK_SPEC, "train": train, "space": {"batch_size": train_size}})
        assert one_problem(train=train, space={"batch_size": train_size + 1}).endswith(
            f"<= {train_size} (the training split's size), found {train_size + 1}"
        )


def test_what_only_the_data_shows_is_found_when_it_is_loaded(tmp_path):
    from caviar.train.data import DataError, load

    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((20, 2)), y=np.arange(-1, 19))
    parse_spec(
        {**QUICK_SPEC, "train": {"task": "file", "data": str(path)}, "space": {"batch_size": 8}}
    )
    with pytest.raises(
        DataError,
        match=r"'y' must hold integer class labels 0..K-1, found int64 values from -1 to 18",
    ):
        load("file", 0, str(path))


def test_a_file_that_is_not_an_npz_gets_one_line(tmp_path):
    path = tmp_path / "d.npz"
    path.write_text("x,y\n1,2\n")
    found = problems(train={"task": "file", "data": str(path), "max_epochs": 2})
    assert found == [
        f"train.data: {path} is not a readable .npz file (File is not a zip file); write it with numpy.savez"
    ]


def test_validate_imports_the_train_function_and_warns_of_a_mode_against_the_metric(
    write_spec, tmp_path
):
    (tmp_path / "mine.py").write_text("def train(config):\n    return {'val_loss': 1.0}\n")
    spec = write_spec({"metric": "val_loss", "mode": "max", "train": {"function": "mine:train"}})
    out = caviar_cli("validate", str(spec), cwd=tmp_path, without_ray=True)
    assert out.returncode == 0, out.stderr
    assert (
        "warning: mode: max, but 'val_loss' looks like a loss where lower is better" in out.stdout
    )
    for module, error in (
        ("train = 3\n", "train.function: 'mine:train' is not callable\n"),
        # Every trial would fail calling it with the config.
        (
            "def train():\n    pass\n",
            "train.function: 'mine:train' has the signature (), which cannot take the one "
            "argument caviar calls it with (too many positional arguments); define it as def "
            "train(config): ...\n",
        ),
        # A module that does not parse, or raises as it is imported: one line, not a traceback.
        (
            "def train(:\n",
            f"train.function: cannot import 'mine:train' (ImportError: SyntaxError at "
            f"{tmp_path / 'mine.py'}:1: invalid syntax); the module must be importable",
        ),
        (
            "\nraise RuntimeError('no GPU here')\n",
            f"(ImportError: RuntimeError at {tmp_path / 'mine.py'}:2: no GPU here)",
        ),
    ):
        (tmp_path / "mine.py").write_text(module)
        out = caviar_cli("validate", str(spec), cwd=tmp_path, without_ray=True)
        assert out.returncode == 2 and error in out.stderr, out.stderr


@pytest.mark.parametrize("name", ["hyperband", "pbt"])
def test_validate_warns_that_a_concurrency_limit_counts_paused_trials(write_spec, tmp_path, name):
    raw = {"scheduler": {"name": name}, "searcher": {"name": "random"}}
    out = caviar_cli("validate", str(write_spec(raw)), cwd=tmp_path, without_ray=True)
    assert out.returncode == 0 and "counts the trials" not in out.stdout, out.stderr
    raw["budget"] = {"num_samples": 8, "max_concurrent": 2}
    out = caviar_cli("validate", str(write_spec(raw)), cwd=tmp_path, without_ray=True)
    assert f"warning: budget.max_concurrent: 2 counts the trials {name} pauses too" in out.stdout


def test_mode_warnings():
    from caviar.cli import mode_warnings

    assert mode_warnings("val_acc", "min") and mode_warnings("top1_accuracy", "min")
    assert mode_warnings("train_loss", "max") and mode_warnings("val_error", "max")
    assert not mode_warnings("val_acc", "max") and not mode_warnings("val_loss", "min")
    assert not mode_warnings("score", "min")
