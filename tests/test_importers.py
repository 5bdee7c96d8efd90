"""`caviar import wandb` / `caviar import tune`: every W&B distribution and Ray Tune domain as a
caviar domain with the same values, and `caviar validate` pointing migration mistakes at the
importers. Tests that build real Ray objects import Ray (never start it) and are in the
integration lane, which the fast lane's import check requires."""

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest

from caviar import cli, importers
from caviar.errors import SpecError
from caviar.importers import from_tune, from_wandb, to_yaml
from caviar.space import Choice, Fixed, nested, parse_domain, parse_space
from caviar.spec import load_spec, parse_spec, parse_yaml
from tests.conftest import QUICK_SPEC, caviar_cli

SWEEP = {
    "method": "random",
    "metric": {"name": "val_acc", "goal": "maximize"},
    "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1}},
}


def wandb(parameters=None, **keys):
    return from_wandb({**SWEEP, **({"parameters": parameters} if parameters else {}), **keys})


def space_of(parameters, **keys):
    return wandb(parameters, **keys)[0]["space"]


def problems_of(fn, *args, **kwargs):
    with pytest.raises(SpecError) as e:
        fn(*args, **kwargs)
    return e.value.problems


# --- W&B distributions ----------------------------------------------------------------------

# W&B's samplers, from the ppf of each distribution in wandb/sweeps (src/sweeps/params.py) and
# the *_values forms' definitions in W&B's docs: u is uniform on [0, 1).
W = {
    "uniform": lambda u, p: p["min"] + u * (p["max"] - p["min"]),
    "int_uniform": lambda u, p: np.floor(p["min"] + u * (p["max"] + 1 - p["min"])),
    "q_uniform": lambda u, p: np.round((p["min"] + u * (p["max"] - p["min"])) / p["q"]) * p["q"],
    "log_uniform": lambda u, p: np.exp(p["min"] + u * (p["max"] - p["min"])),
    "log_uniform_values": lambda u, p: np.exp(
        np.log(p["min"]) + u * (np.log(p["max"]) - np.log(p["min"]))
    ),
    "q_log_uniform": lambda u, p: np.round(W["log_uniform"](u, p) / p["q"]) * p["q"],
    "q_log_uniform_values": lambda u, p: np.round(W["log_uniform_values"](u, p) / p["q"]) * p["q"],
    # ln(1/X) uniform on [min, max]
    "inv_log_uniform": lambda u, p: np.exp(-(p["min"] + u * (p["max"] - p["min"]))),
    # ln(1/X) uniform on [ln(1/max), ln(1/min)]
    "inv_log_uniform_values": lambda u, p: np.exp(
        -(np.log(1 / p["max"]) + u * (np.log(1 / p["min"]) - np.log(1 / p["max"])))
    ),
}
PARAMS = {
    "uniform": {"min": -1.0, "max": 3.0},
    "int_uniform": {"min": 2, "max": 9},
    "q_uniform": {"min": 0.0, "max": 1.0, "q": 0.25},
    "log_uniform": {"min": -9.2, "max": -2.3},
    "log_uniform_values": {"min": 1e-4, "max": 1e-1},
    "q_log_uniform": {"min": math.log(16), "max": math.log(512), "q": 16},
    "q_log_uniform_values": {"min": 16, "max": 512, "q": 16},
    "inv_log_uniform": {"min": 1.0, "max": 5.0},
    "inv_log_uniform_values": {"min": 0.01, "max": 10.0},
}


@pytest.mark.parametrize("dist", sorted(W))
def test_every_wandb_distribution_gives_the_same_values(dist):
    """The imported caviar domain has W&B's range and W&B's scale: over many draws the same
    smallest, largest and median value."""
    domain = parse_domain(space_of({"x": {"distribution": dist, **PARAMS[dist]}})["x"])
    u = np.random.default_rng(0).random(40_000)
    theirs = W[dist](u, PARAMS[dist])
    ours = np.array([domain.from_unit(x) for x in u])
    for stat in (np.min, np.max, np.median):
        assert stat(ours) == pytest.approx(stat(theirs), rel=0.03), (dist, stat.__name__)


@pytest.mark.parametrize(
    ("param", "domain"),
    [
        ({"values": [32, 64]}, {"choice": [32, 64]}),
        ({"distribution": "categorical", "values": ["a"]}, {"choice": ["a"]}),
        ({"value": 0.5}, {"value": 0.5}),
        ({"distribution": "constant", "value": "adamw"}, {"value": "adamw"}),
        ({"min": 1, "max": 4}, {"randint": [1, 4]}),  # both ints: int_uniform, as W&B infers
        ({"min": 1, "max": 4.0}, {"uniform": [1, 4.0]}),  # a float: uniform
        ({"distribution": "int_uniform", "min": 3, "max": 3}, {"value": 3}),
        ({"distribution": "log_uniform", "min": 0, "max": 1}, {"loguniform": [1.0, 2.71828]}),
        ({"distribution": "inv_log_uniform", "min": 0, "max": 1}, {"loguniform": [0.367879, 1.0]}),
        ({"distribution": "q_uniform", "min": 0, "max": 1}, {"quniform": [0, 1, 1.0]}),  # q=1
    ],
)
def test_wandb_parameter_forms(param, domain):
    assert space_of({"x": param})["x"] == domain


def test_categorical_probabilities_are_dropped_with_a_note():
    spec, notes = wandb({"x": {"values": [1, 2], "probabilities": [0.9, 0.1]}})
    assert spec["space"]["x"] == {"choice": [1, 2]}
    assert any("space.x" in n and "probabilities" in n for n in notes)


@pytest.mark.parametrize(
    ("param", "fix"),
    [
        ({"distribution": "normal"}, "{uniform: [-2.0, 2.0]}"),
        ({"distribution": "normal", "mu": 0.5, "sigma": 0.1}, "{uniform: [0.3, 0.7]}"),
        ({"distribution": "q_normal", "mu": 10, "sigma": 2, "q": 2}, "{quniform: [6.0, 14.0, 2]}"),
        ({"distribution": "log_normal"}, "{loguniform: [0.135335, 7.38906]}"),
        ({"distribution": "q_log_normal", "q": 1}, "{qloguniform: [0.135335, 7.38906, 1]}"),
        ({"distribution": "beta"}, "{uniform: [0, 1]}"),
    ],
)
def test_unbounded_wandb_distributions_are_refused_with_the_bounded_domain(param, fix):
    (problem,) = problems_of(wandb, {"x": param})
    assert problem.startswith("parameters.x: ") and fix in problem
    if param["distribution"] != "beta":
        assert "unbounded" in problem and "bounded" in problem


def test_nested_parameters_get_dotted_names_and_the_train_function_gets_them_nested():
    params = {
        "opt": {
            "parameters": {
                "lr": {"min": 0.1, "max": 0.5},
                "inner": {"parameters": {"m": {"value": 1}}},
            }
        },
        "x": {"values": [1, 2]},
    }
    spec, notes = wandb(params)
    assert spec["space"] == {
        "opt.lr": {"uniform": [0.1, 0.5]},
        "opt.inner.m": {"value": 1},
        "x": {"choice": [1, 2]},
    }
    assert any("config['a']['b']" in n for n in notes)
    assert nested({"opt.lr": 0.2, "opt.inner.m": 1, "x": 2}) == {
        "opt": {"lr": 0.2, "inner": {"m": 1}},
        "x": 2,
    }


def test_every_problem_of_a_wandb_sweep_is_listed_with_its_key_path():
    found = problems_of(
        from_wandb,
        {
            "method": "hyperopt",
            "metric": {"name": "loss", "goal": "lower"},
            "early_terminate": {"type": "envelope"},
            "parameters": {
                "a": {"distribution": "log_unifrom", "min": 1, "max": 2},
                "b": {"mn": 1, "max": 2},
                "c": {"distribution": "uniform", "min": 1},
            },
            "run_caps": 3,
        },
    )
    expected = [
        "run_caps: unknown or unsupported W&B key; did you mean 'run_cap'?",
        "method: expected one of grid, random, bayes, found 'hyperopt'",
        "metric.goal: expected maximize or minimize, found 'lower'",
        "parameters.a: unknown distribution 'log_unifrom'; did you mean 'log_uniform'?",
        "parameters.b: unknown key 'mn'; did you mean 'min'?",
        "parameters.c: distribution uniform needs min and max",
        "early_terminate.type: expected hyperband (W&B's only), found 'envelope'",
    ]
    assert len(found) == len(expected), found
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start), (line, start)


def test_an_impossible_range_is_refused_as_the_imported_domain():
    (problem,) = problems_of(
        wandb, {"lr": {"distribution": "log_uniform_values", "min": 0, "max": 1}}
    )
    assert problem.startswith("imported space.lr: ") and "low > 0" in problem


# --- W&B methods, metric, early stopping, the rest ------------------------------------------


@pytest.mark.parametrize(("method", "searcher"), [("random", "random"), ("bayes", "tpe")])
def test_wandb_methods(method, searcher):
    spec, notes = wandb(method=method)
    assert spec["searcher"] == {"name": searcher}
    assert (method == "bayes") == any(n.startswith("searcher: tpe") for n in notes)


def test_wandb_grid_grids_values_int_uniform_and_q_uniform_as_wandb_does():
    spec, _ = wandb(
        {
            "a": {"values": [1, 2, 3]},
            "b": {"min": 1, "max": 2},
            "c": {"distribution": "q_uniform", "min": 0.0, "max": 0.3, "q": 0.1},  # max excluded
            "d": {"value": "x"},
        },
        method="grid",
    )
    assert spec["space"] == {
        "a": {"choice": [1, 2, 3]},
        "b": {"choice": [1, 2]},
        "c": {"choice": [0.0, 0.1, 0.2]},
        "d": {"value": "x"},
    }
    assert spec["searcher"] == {"name": "grid"} and spec["budget"] == {"num_samples": 18}
    parsed = parse_spec({**spec, "train": {"function": "m:f"}})
    assert parsed.searcher.name == "grid"  # the grid searcher takes it: 18 = the grid's size

    (problem,) = problems_of(wandb, {"lr": {"min": 0.1, "max": 1.0}}, method="grid")
    assert problem.startswith("parameters.lr: method grid takes values")


@pytest.mark.parametrize(
    ("goal", "mode"), [("maximize", "max"), ("minimize", "min"), (None, "min")]
)
def test_wandb_metric_goal(goal, mode):
    metric = {"name": "loss", **({"goal": goal} if goal else {})}  # W&B's default: minimize
    spec, _ = wandb(metric=metric)
    assert (spec["metric"], spec["mode"]) == ("loss", mode)


@pytest.mark.parametrize(
    ("et", "scheduler", "max_epochs"),
    [
        ({"type": "hyperband", "min_iter": 3}, {"grace_period": 3, "reduction_factor": 3}, None),
        (
            {"type": "hyperband", "min_iter": 2, "eta": 2},
            {"grace_period": 2, "reduction_factor": 2},
            None,
        ),
        # W&B's bands: int(27 / 3**k) for k = 1..2 = 9, 3: the lowest is 27 / 3**2
        (
            {"type": "hyperband", "max_iter": 27, "s": 2},
            {"grace_period": 3, "reduction_factor": 3},
            27,
        ),
        (
            {"type": "hyperband", "max_iter": 10, "s": 2, "eta": 3},
            {"grace_period": 1, "reduction_factor": 3},
            10,
        ),
    ],
)
def test_wandb_hyperband_is_asha(et, scheduler, max_epochs):
    spec, notes = wandb(early_terminate=et)
    assert spec["scheduler"] == {"name": "asha", **scheduler}
    assert spec["train"].get("max_epochs") == max_epochs
    assert any(n.startswith("scheduler: W&B's hyperband") for n in notes)


def test_wandb_without_early_terminate_is_fifo_and_says_what_caviar_does():
    spec, notes = wandb()
    assert spec["scheduler"] == {"name": "fifo"}
    assert any("fifo" in n and "{name: caviar}" in n for n in notes)


def test_wandb_other_keys():
    spec, notes = wandb(
        name="My sweep #3",
        run_cap=40,
        program="train.py",
        entity="me",
        project="p",
        description="first try",
    )
    assert spec["name"] == "My-sweep-3" and spec["budget"] == {"num_samples": 40}
    assert spec["train"] == {"function": importers.TRAIN_PLACEHOLDER}
    for key in ("program/command 'train.py'", "entity", "project", "description", "name:"):
        assert any(n.startswith(key) for n in notes), key
    spec, notes = wandb({"max_epochs": {"value": 27}, "lr": {"min": 0.1, "max": 1.0}})
    assert spec["train"]["max_epochs"] == 27 and "max_epochs" not in spec["space"]
    assert spec["budget"] == {"num_samples": importers.DEFAULT_SAMPLES}
    assert any(n.startswith("budget.num_samples: 20") for n in notes)


def test_wandb_multi_objective_and_custom_are_refused():
    found = problems_of(wandb, method="custom", metrics=[{"name": "a"}, {"name": "b"}])
    assert any(p.startswith("metrics: ") and "one metric" in p for p in found)
    assert any(p.startswith("method: ") and "custom" in p for p in found)


# --- YAML out, validate in --------------------------------------------------------------------


@pytest.mark.parametrize("train", ["digits", "mytrain:train"])
def test_imported_yaml_loads_as_a_spec(tmp_path, train):
    spec, notes = from_wandb(parse_yaml(Path("examples/wandb/sweep.yaml").read_text()), train=train)
    text = to_yaml(spec, notes)
    assert text.startswith("# ") and "  lr: {loguniform: [0.0001, 0.03]}\n" in text
    assert parse_yaml(text) == spec  # the comments are comments
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    loaded = load_spec(path)
    assert loaded.searcher.name == "tpe" and loaded.scheduler.name == "asha"
    assert loaded.budget.num_samples == 40 and loaded.train.max_epochs == 27


def test_a_placeholder_is_refused_by_validation_naming_what_to_fill_in():
    spec, _ = wandb(metric=None)
    found = problems_of(parse_spec, spec)
    assert any(p.startswith("train.function: <module:function> is a placeholder") for p in found)
    assert any(p.startswith("metric: <metric> is a placeholder") for p in found)
    assert len(found) == 2, found  # not also "expected module:function"
    found = problems_of(parse_spec, from_tune({"lr": {"grid_search": [0.1]}}, train="digits")[0])
    assert found == [
        "mode: expected 'min' or 'max', found '<max or min>'",
        "metric: <metric> is a placeholder left by caviar import; write the metric your train "
        "function reports",
    ]


def test_validate_recognizes_a_wandb_sweep(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(Path("examples/wandb/sweep.yaml").read_text())
    out = caviar_cli("validate", str(path), without_ray=True)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "caviar: error: spec: this looks like a W&B sweep config (top-level method and "
        f"parameters, no space); convert it with: caviar import wandb {path}"
    ]


@pytest.mark.parametrize(
    ("text", "fix"),
    [
        ("tune.loguniform(1e-4, 1e-1)", "write it as {loguniform: [0.0001, 0.1]}"),
        ("loguniform(1e-4,1e-1)", "write it as {loguniform: [0.0001, 0.1]}"),
        ("ray.tune.uniform(lower=0, upper=0.5)", "write it as {uniform: [0, 0.5]}"),
        ("tune.randint(1, 10)", "write it as {randint: [1, 9]} (Ray's upper bound 10 is excluded"),
        (
            "tune.qrandint(32, 256, 32)",
            "write it as {choice: [32, 64, 96, 128, 160, 192, 224, 256]}",
        ),
        ("tune.choice(['adam', 'sgd'])", 'write it as {choice: ["adam", "sgd"]}'),
        ("tune.randn(0, 1)", "write {uniform: [-2.0, 2.0]} instead"),
        ("tune.loguniform(LOW, HIGH)", "write it as a caviar domain such as"),
    ],
)
def test_ray_tune_code_as_a_space_value_is_refused_with_the_caviar_form(text, fix):
    with pytest.raises(SpecError) as e:
        parse_spec({**QUICK_SPEC, "space": {**QUICK_SPEC["space"], "lr": text}})
    (problem,) = e.value.problems
    assert problem.startswith(f"space.lr: {text!r} is Ray Tune code") and fix in problem, problem


def test_other_strings_are_still_fixed_values():
    for text in ("adamw", "relu(x)", "my.tune.thing"):
        assert parse_domain(text) == Fixed(text)


def test_validate_lists_ray_code_with_every_other_problem(write_spec):
    path = write_spec(
        {
            "space": {"lr": "tune.loguniform(1e-4, 1e-1)", "hidden": {"randint": [16, 64]}},
            "mode": "maximum",
        }
    )
    out = caviar_cli("validate", str(path), without_ray=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert any(line.startswith("caviar: error: mode: ") for line in lines)
    assert any("space.lr: " in line and "{loguniform: [0.0001, 0.1]}" in line for line in lines)


# --- the CLI ----------------------------------------------------------------------------------


def run(*args, capsys):
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_import_wandb_then_validate(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wandb_train_fn.py").write_text("def train(config):\n    return {'val_acc': 1.0}\n")
    (tmp_path / "sweep.yaml").write_text(
        textwrap.dedent(
            """\
            program: train.py
            method: random
            metric: {name: val_acc, goal: maximize}
            parameters:
              lr: {distribution: log_uniform_values, min: 1e-4, max: 1e-1}
              layers: {min: 1, max: 4}
            """
        )
    )
    code, out, err = run(
        "import", "wandb", "sweep.yaml", "--train", "wandb_train_fn:train", capsys=capsys
    )
    assert code == 0 and out.startswith("# imported from sweep.yaml by `caviar import wandb`")
    assert "caviar: note: budget.num_samples: 20" in err
    assert parse_yaml(out)["train"] == {"function": "wandb_train_fn:train"}

    code, _, err = run(
        "import",
        "wandb",
        "sweep.yaml",
        "--train",
        "wandb_train_fn:train",
        "-o",
        "out.yaml",
        capsys=capsys,
    )
    assert code == 0 and "out.yaml: written; check it with: caviar validate out.yaml" in err
    code, out, err = run("validate", "out.yaml", capsys=capsys)
    assert code == 0, err
    assert out.startswith("out.yaml: ok: sweep 'sweep', 20 trials of wandb_train_fn:train")

    code, _, _ = run("import", "wandb", "sweep.yaml", "-o", "todo.yaml", capsys=capsys)
    assert code == 0
    code, _, err = run("validate", "todo.yaml", capsys=capsys)
    assert code == 2
    assert err.startswith(
        "caviar: error: train.function: <module:function> is a placeholder left by caviar import"
    )


def test_cli_import_refuses_bad_input_with_exit_2_one_line_each(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(
        "method: random\nparameters:\n  x: {distribution: normal}\n  y: {distribution: q_log_normal}\n"
    )
    code, out, err = run("import", "wandb", "bad.yaml", capsys=capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("caviar: error: parameters.") for line in lines)
    code, _, err = run("import", "wandb", "missing.yaml", capsys=capsys)
    assert code == 2 and "missing.yaml: no such file" in err
    code, _, err = run("import", "tune", "no_such_module:space", capsys=capsys)
    assert code == 2 and err.startswith("caviar: error: tune: cannot import 'no_such_module:space'")


def test_cli_import_tune_from_a_plain_dict(tmp_path, monkeypatch, capsys):
    """A param_space of constants and grid_search dicts needs no Ray: a grid."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain_space.py").write_text(
        "space = {'lr': {'grid_search': [0.1, 0.01]}, 'depth': {'grid_search': [1, 2, 3]}, "
        "'optimizer': 'adamw'}\n"
    )
    code, out, err = run(
        "import", "tune", "plain_space.py:space", "--train", "digits", capsys=capsys
    )
    assert code == 0, err
    spec = parse_yaml(out)
    assert spec["space"] == {
        "lr": {"choice": [0.1, 0.01]},
        "depth": {"choice": [1, 2, 3]},
        "optimizer": {"value": "adamw"},
    }
    assert spec["searcher"] == {"name": "grid"} and spec["budget"] == {"num_samples": 6}
    assert (spec["metric"], spec["mode"]) == ("<metric>", "<max or min>")


def test_tune_nested_values_get_dotted_names_and_eval_values_are_refused():
    found = problems_of(
        from_tune,
        {"model": {"width": {"grid_search": [1, 2]}}, "f": {"eval": "spec.config.x * 2"}, "ok": 1},
    )
    assert len(found) == 1 and found[0].startswith("param_space.f: tune.sample_from")
    spec, _ = from_tune({"model": {"width": {"grid_search": [1, 2]}, "depth": 2}, "x": 1})
    assert spec["space"]["model.width"] == {"choice": [1, 2]}
    assert spec["space"]["model.depth"] == {"value": 2}
    spec, _ = from_tune({"model": {"width": 3}, "x": {"grid_search": [1, 2]}})
    assert spec["space"]["model"] == {"value": {"width": 3}}  # a constant dict passes whole


def test_wandb_example_imports_and_validates(capsys):
    code, out, err = run(
        "import", "wandb", "examples/wandb/sweep.yaml", "--train", "mnist1d", capsys=capsys
    )
    assert code == 0, err
    spec = parse_spec(parse_yaml(out))
    assert spec.train.task == "mnist1d" and spec.scheduler.name == "asha"
    assert isinstance(dict(spec.space)["batch_size"], Choice)


# --- Ray Tune: real Ray objects ---------------------------------------------------------------

ray_lane = pytest.mark.integration  # imports Ray (starts nothing)


def ray_domains():
    from ray import tune

    return {
        "uniform": (tune.uniform(-1.0, 2.0), {"uniform": [-1.0, 2.0]}),
        "loguniform": (tune.loguniform(1e-4, 1e-1), {"loguniform": [1e-4, 1e-1]}),
        "quniform": (tune.quniform(0.0, 1.0, 0.25), {"quniform": [0.0, 1.0, 0.25]}),
        "qloguniform": (tune.qloguniform(1e-3, 1.0, 1e-3), {"qloguniform": [1e-3, 1.0, 1e-3]}),
        "randint": (tune.randint(1, 5), {"randint": [1, 4]}),
        "lograndint": (tune.lograndint(2, 20), {"lograndint": [2, 19]}),
        "qrandint q=1": (tune.qrandint(0, 10), {"randint": [0, 9]}),
        "qrandint": (tune.qrandint(2, 20, 3), {"choice": [3, 6, 9, 12, 15, 18]}),
        "qlograndint": (tune.qlograndint(4, 64, 4), {"qloguniform": [4, 64, 4]}),
        "qlograndint q=1": (tune.qlograndint(1, 8, 1), {"lograndint": [1, 7]}),
        "choice": (tune.choice(["a", "b", 3]), {"choice": ["a", "b", 3]}),
        "randint of one value": (tune.randint(3, 4), {"value": 3}),
    }


@ray_lane
@pytest.mark.parametrize(
    "name",
    [
        "uniform",
        "loguniform",
        "quniform",
        "qloguniform",
        "randint",
        "lograndint",
        "qrandint q=1",
        "qrandint",
        "qlograndint",
        "qlograndint q=1",
        "choice",
        "randint of one value",
    ],
)
def test_every_ray_domain_gives_the_values_ray_samples(name):
    """Sampled by Ray itself many times, a domain's smallest and largest value (every value, for
    discrete ones) are the imported caviar domain's."""
    ray_domain, expected = ray_domains()[name]
    spec, _ = from_tune({"x": ray_domain})
    assert spec["space"]["x"] == expected
    drawn = ray_domain.sample(size=20_000, random_state=np.random.default_rng(0))
    domain = parse_domain(expected)
    ours = [domain.sample(np.random.default_rng(i)) for i in range(4_000)]
    if isinstance(domain, (Choice, Fixed)) or "int" in name:
        assert set(drawn) == set(ours), name
    else:
        assert min(drawn) == pytest.approx(domain.low, rel=0.02, abs=1e-9)
        assert max(drawn) == pytest.approx(domain.high, rel=0.02)
        assert np.median(drawn) == pytest.approx(np.median(ours), rel=0.1)
    if "int" in name:
        assert all(isinstance(v, int) for v in ours) or "qlog" in name


@ray_lane
def test_unbounded_and_opaque_ray_domains_are_refused():
    from ray import tune

    found = problems_of(
        from_tune,
        {
            "a": tune.randn(1.0, 0.5),
            "b": tune.qrandn(0, 2, 0.5),
            "c": tune.sample_from(lambda spec: 3),
            "d": tune.choice([{"x": 1}, {"x": 2}]),
            "f": [tune.uniform(0, 1)],
        },
    )
    assert [p.split(":")[0] for p in found] == [f"param_space.{k}" for k in "abcdf"]
    assert "{uniform: [0.0, 2.0]}" in found[0] and "{quniform: [-4.0, 4.0, 0.5]}" in found[1]
    assert "sample_from" in found[2] and "a choice among dicts" in found[3]
    assert "a list with searched values inside" in found[4]


@ray_lane
def test_grid_search_with_random_domains_samples_the_grid_as_a_choice():
    from ray import tune

    config = tune.TuneConfig(metric="loss", mode="min", num_samples=3)
    spec, notes = from_tune((config, {"a": tune.grid_search([1, 2]), "b": tune.uniform(0, 1)}))
    assert spec["searcher"] == {"name": "random"} and spec["budget"] == {"num_samples": 6}
    assert spec["space"]["a"] == {"choice": [1, 2]}
    assert any(n.startswith("space: a: Ray crossed") for n in notes)
    spec, _ = from_tune((config, {"a": tune.grid_search([1, 2]), "b": 5}))
    assert spec["searcher"] == {"name": "grid"} and spec["budget"] == {"num_samples": 6}


def test_a_grid_without_num_samples_runs_once_as_ray_does_and_the_notes_say_so():
    """Ray runs a grid once by default; the notes must not claim caviar's default of 20."""
    spec, notes = from_tune({"lr": {"grid_search": [0.1, 0.01]}, "depth": 2})
    assert spec["budget"] == {"num_samples": 2}
    assert not any(n.startswith("budget.num_samples") for n in notes), notes


@ray_lane
def test_a_grid_repeated_until_a_time_budget_runs_once_and_the_notes_say_so():
    from ray import tune

    config = tune.TuneConfig(metric="loss", mode="min", num_samples=-1, time_budget_s=60)
    spec, notes = from_tune((config, {"a": tune.grid_search([1, 2]), "b": tune.uniform(0, 1)}))
    assert spec["budget"]["num_samples"] == 2
    (note,) = [n for n in notes if n.startswith("budget.num_samples")]
    assert "repeated the grid until time_budget_s; caviar runs it once" in note


@ray_lane
def test_tune_config_schedulers_and_search_algorithms():
    from ray import tune
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
        PopulationBasedTraining,
    )
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from ray.tune.search.hyperopt import HyperOptSearch
    from ray.tune.search.optuna import OptunaSearch

    space = {"lr": tune.loguniform(1e-4, 1e-1)}

    def imported(**config):
        spec, notes = from_tune((tune.TuneConfig(**config), space), train="m:f")
        parse_spec(spec)
        return spec, notes

    spec, _ = imported(
        metric="val_acc",
        mode="max",
        num_samples=12,
        max_concurrent_trials=3,
        time_budget_s=600,
        scheduler=ASHAScheduler(max_t=27, grace_period=3, reduction_factor=3, brackets=2),
    )
    assert spec["scheduler"] == {
        "name": "asha",
        "reduction_factor": 3,
        "grace_period": 3,
        "brackets": 2,
    }
    assert spec["train"] == {"function": "m:f", "max_epochs": 27}
    assert spec["budget"] == {"num_samples": 12, "max_concurrent": 3, "time_budget_s": 600}
    assert spec["searcher"] == {"name": "random"}  # no search_alg: Ray's random search

    spec, _ = imported(
        scheduler=HyperBandScheduler(metric="loss", mode="min", max_t=81, reduction_factor=3)
    )
    assert spec["scheduler"] == {"name": "hyperband", "reduction_factor": 3}
    assert (spec["metric"], spec["mode"], spec["train"]["max_epochs"]) == ("loss", "min", 81)

    spec, notes = imported(metric="a", mode="max", scheduler=MedianStoppingRule())  # 60 s grace
    assert spec["scheduler"] == {"name": "median", "min_samples_required": 3}
    assert any("counted time_total_s" in n and "grace_period" in n for n in notes)
    spec, _ = imported(
        metric="a",
        mode="max",
        scheduler=MedianStoppingRule(time_attr="training_iteration", grace_period=4),
    )
    assert spec["scheduler"] == {"name": "median", "grace_period": 4, "min_samples_required": 3}

    pbt = PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=5, hyperparam_mutations={"lr": [1e-3]}
    )
    spec, notes = imported(metric="a", mode="max", scheduler=pbt)
    assert spec["scheduler"] == {
        "name": "pbt",
        "perturbation_interval": 5,
        "quantile_fraction": 0.25,
        "resample_probability": 0.25,
    }
    assert any("PBT mutated lr" in n for n in notes)

    spec, notes = imported(metric="a", mode="max", scheduler=FIFOScheduler())
    assert spec["scheduler"] == {"name": "fifo"} and any("{name: caviar}" in n for n in notes)

    for alg, searcher in (
        (
            HyperOptSearch(n_initial_points=7, gamma=0.3),
            {"name": "tpe", "n_startup": 7, "gamma": 0.3},
        ),
        (BasicVariantGenerator(), {"name": "random"}),
        (OptunaSearch(), {"name": "optuna_tpe"}),
    ):
        spec, _ = imported(metric="a", mode="max", search_alg=alg)
        assert spec["searcher"] == searcher, type(alg)
    spec, _ = imported(metric="a", mode="max", search_alg=ConcurrencyLimiter(HyperOptSearch(), 2))
    assert spec["searcher"]["name"] == "tpe" and spec["budget"]["max_concurrent"] == 2

    import optuna

    for sampler, name in (
        (optuna.samplers.TPESampler(n_startup_trials=5), {"name": "optuna_tpe", "n_startup": 5}),
        (
            optuna.samplers.CmaEsSampler(n_startup_trials=3),
            {"name": "optuna_cmaes", "n_startup": 3},
        ),
        (optuna.samplers.RandomSampler(), {"name": "random"}),
    ):
        spec, _ = imported(metric="a", mode="max", search_alg=OptunaSearch(sampler=sampler))
        assert spec["searcher"] == name
    found = problems_of(
        from_tune,
        (tune.TuneConfig(search_alg=OptunaSearch(sampler=optuna.samplers.NSGAIISampler())), space),
    )
    assert found[0].startswith("search_alg: Optuna's NSGAIISampler has no caviar searcher")


@ray_lane
def test_a_tuner_gives_its_train_function_and_stop():
    from ray import tune

    tuner = tune.Tuner(
        importers.to_yaml,  # a module-level function: its "module:function" is the train function
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(metric="score", mode="max", num_samples=4),
        run_config=tune.RunConfig(stop={"training_iteration": 9}),
    )
    spec, notes = from_tune(tuner)
    assert spec["train"] == {"function": "caviar.importers:to_yaml", "max_epochs": 9}
    assert spec["budget"] == {"num_samples": 4} and spec["metric"] == "score"
    parse_spec(spec)


@ray_lane
def test_cli_imports_the_tune_example_and_validates_it(tmp_path):
    out = tmp_path / "spec.yaml"
    imported = caviar_cli(
        "import",
        "tune",
        "examples/tune/search_space.py:search_space",
        "--train",
        "mnist1d",
        "-o",
        str(out),
    )
    assert imported.returncode == 0, imported.stderr
    assert (
        "space.hidden: Ray's upper bound 513 is excluded, caviar's included: [32, 512]"
        in imported.stderr
    )
    validated = caviar_cli("validate", str(out), without_ray=True)
    assert validated.returncode == 0, validated.stderr
    spec = load_spec(out)
    assert spec.searcher.name == "tpe" and spec.budget.max_concurrent == 4


def test_a_dotted_name_may_not_also_be_a_parameter():
    _, problems = parse_space({"opt": {"value": 1}, "opt.lr": {"uniform": [0, 1]}})
    assert problems == [
        "space.opt.lr: a dotted name is a key inside 'opt' (nested in the train function's "
        "config), but 'opt' is a parameter too; rename one of them"
    ]
