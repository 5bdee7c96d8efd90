"""Sweeps of several metrics: dominance and the Pareto front, the spec, the searchers that take
several objectives, and the tables, `caviar best` and the report of such a run."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from caviar import analysis, objective, results
from caviar.errors import SpecError
from caviar.searchers import Outcome, searcher_class
from caviar.searchers.optuna import OptunaMOTPEOptions, OptunaNSGA2Options
from caviar.space import Float, Space
from caviar.spec import dump_yaml, load_spec, parse_spec, spec_to_dict
from caviar.storage import Location
from tests.conftest import QUICK_SPEC

MO = {"metric": ["val_acc", "params"], "mode": ["max", "min"]}
BASE = {k: v for k, v in QUICK_SPEC.items() if k != "scheduler"}  # QUICK_SPEC names ASHA

# --- dominance --------------------------------------------------------------------------------


def test_dominance_with_a_min_max_mix():
    modes = ("max", "min")
    assert objective.dominates((0.9, 10), (0.8, 20), modes)
    assert objective.dominates((0.9, 10), (0.9, 20), modes)  # equal on one, better on the other
    assert not objective.dominates((0.9, 10), (0.9, 10), modes)  # equal is not better
    assert not objective.dominates((0.9, 30), (0.8, 20), modes)  # better on one, worse on one
    assert not objective.dominates((0.8, 20), (0.9, 10), modes)


def test_pareto_front_with_ties_gaps_and_a_min_max_mix():
    points = [
        (0.90, 100),  # dominated by (0.95, 100): equal size, less accurate
        (0.95, 100),
        (0.95, 100),  # a tie of a front point: both on the front
        (0.80, 10),
        (0.70, 10),  # dominated: as small, less accurate
        (0.99, 5000),
        None,  # a trial without values: never on the front
        (1.00, math.nan),  # a non-finite value: never on it, and dominates nothing
        (0.80, 50),  # dominated by (0.80, 10)
    ]
    front = objective.pareto_front(points, ("max", "min"))
    assert front == [False, True, True, True, False, True, False, False, False]
    # The same points with both metrics minimized: another front.
    assert objective.pareto_front(points, ("min", "min")) == [
        False,
        False,
        False,
        False,
        True,
        False,
        False,
        False,
        False,
    ]
    assert objective.pareto_front([], ("max", "min")) == []


def test_pareto_front_agrees_with_the_definition_on_random_points():
    rng = np.random.default_rng(0)
    for _ in range(20):
        # Few distinct values: many ties.
        points = [tuple(rng.integers(0, 5, size=3).tolist()) for _ in range(40)]
        modes = ("max", "min", "min")
        expected = [
            not any(objective.dominates(q, p, modes) for q in points if q is not p) for p in points
        ]
        assert objective.pareto_front(points, modes) == expected


# --- the spec ---------------------------------------------------------------------------------


def problems(**raw):
    with pytest.raises(SpecError) as e:
        parse_spec({**BASE, **raw})
    return e.value.problems


def test_a_spec_of_two_metrics_trains_every_trial_to_the_end_and_round_trips():
    spec = parse_spec({**BASE, **MO})
    assert spec.metrics == ("val_acc", "params") and spec.modes == ("max", "min")
    # No early stopping, and a searcher that takes several metrics.
    assert spec.scheduler.name == "fifo" and spec.searcher.name == "random"
    written = yaml.safe_load(dump_yaml(spec_to_dict(spec)))
    assert written["metric"] == ["val_acc", "params"] and written["mode"] == ["max", "min"]
    assert parse_spec(written) == spec
    example = load_spec("examples/multi_objective.yaml")
    assert example.metrics == ("val_acc", "params") and example.searcher.name == "optuna_motpe"
    # One metric stays as it was: a string.
    one = parse_spec(QUICK_SPEC)
    assert one.metric == "val_acc" and one.metrics == ("val_acc",) and one.modes == ("max",)


@pytest.mark.parametrize(
    "raw, expected",
    [
        (
            {"mode": "max"},
            ["mode: expected 2 modes, one per metric (val_acc, params), found 'max'"],
        ),
        (
            {"mode": ["max", "min", "min"]},
            [
                "mode: expected 2 modes, one per metric (val_acc, params), found "
                "['max', 'min', 'min']"
            ],
        ),
        ({"metric": "val_acc"}, ["mode: expected 'min' or 'max', found ['max', 'min']"]),
        (
            {"mode": ["max", "smaller"]},
            ["mode: expected 'min' or 'max' for each metric, found ['max', 'smaller']"],
        ),
        (
            {"metric": ["val_acc"], "mode": "max"},
            [
                "metric: expected a metric's name, or a list of 2 or more different names (a "
                "sweep of several metrics), found ['val_acc']"
            ],
        ),
        (
            {"metric": ["val_acc", "val_acc"]},
            [
                "metric: expected a metric's name, or a list of 2 or more different names (a "
                "sweep of several metrics), found ['val_acc', 'val_acc']"
            ],
        ),
        (
            {"metric": ["val_acc", "size"]},
            [
                "metric: the built-in train function does not report 'size' (it reports "
                "epoch, train_loss, val_loss, val_acc, lr, epoch_seconds, samples_per_s, "
                "best_val_acc, test_acc, params)"
            ],
        ),
        (
            {"searcher": {"name": "tpe"}},
            [
                "searcher.name: searcher 'tpe' optimizes one metric, and this sweep has 2 "
                "(val_acc, params); use one that searches several: random, grid, optuna_motpe, "
                "optuna_nsga2"
            ],
        ),
        (
            {"scheduler": {"name": "asha"}},
            [
                "scheduler.name: scheduler 'asha' stops trials early by one metric, and this "
                "sweep has 2 (val_acc, params): a trial behind on one early may lead on another "
                "at the end, so every trial trains to the end (Optuna prunes no multi-objective "
                "study either); use scheduler fifo, or leave the scheduler out"
            ],
        ),
    ],
)
def test_spec_problems_of_several_metrics(raw, expected):
    assert problems(**{**MO, **raw}) == expected


def test_every_problem_of_several_metrics_in_one_pass():
    for mode, first in (("max", "budget"), (["max", "up"], "mode")):
        found = problems(
            **{**MO, "mode": mode},
            searcher={"name": "coarse_to_fine"},
            scheduler={"name": "caviar"},
            budget=0,
        )
        where = ["budget", "mode", "scheduler.name", "searcher.name"]
        assert sorted(p.split(":")[0] for p in found) == where, found
        assert found[0].startswith(first)
    # Capable searchers and an explicit fifo pass.
    for name in ("random", "optuna_nsga2", "optuna_motpe"):
        assert parse_spec({**BASE, **MO, "searcher": {"name": name}, "scheduler": "fifo"})


def test_validate_says_what_a_sweep_of_several_metrics_does(write_spec):
    from tests.conftest import caviar_cli

    spec = write_spec({**MO, "scheduler": {"name": "fifo"}, "searcher": {"name": "optuna_nsga2"}})
    out = caviar_cli("validate", str(spec), without_ray=True)
    assert out.returncode == 0, out.stderr
    assert "with optuna_nsga2, scheduler fifo, max val_acc, min params" in out.stdout
    assert "2 metrics: every trial trains to the end (no early stopping)" in out.stdout
    assert "NSGA-II: a random first generation of 8 trials" in out.stdout


# --- the searchers ----------------------------------------------------------------------------

UNIT_SQUARE = Space((("x1", Float(0.0, 1.0)), ("x2", Float(0.0, 1.0))))


def zdt1(config):
    """ZDT1 in 2 dimensions, both objectives minimized: the front is f2 = 1 - sqrt(f1) at
    x2 = 0."""
    f1, g = config["x1"], 1 + 9 * config["x2"]
    return f1, g * (1 - math.sqrt(f1 / g))


def hypervolume(points, reference=(1.0, 1.0)):
    """The area the front of `points` (both minimized) dominates below `reference`."""
    on = objective.pareto_front(points, ("min", "min"))
    front = [p for p, keep in zip(points, on, strict=True) if keep]
    area, top = 0.0, reference[1]
    for x, y in sorted(p for p in front if p[0] < reference[0] and p[1] < reference[1]):
        if y < top:
            area, top = area + (reference[0] - x) * (top - y), y
    return area


def test_hypervolume_of_a_known_front():
    assert hypervolume([(0.5, 0.5)]) == pytest.approx(0.25)
    assert hypervolume([(0.5, 0.5), (0.25, 0.75), (0.6, 0.6)]) == pytest.approx(0.3125)


def search(name, seed, options=None, n=60):
    searcher = searcher_class(name)(UNIT_SQUARE, ("f1", "f2"), ("min", "min"), n, seed, options)
    points = []
    for i in range(n):
        values = zdt1(searcher.suggest(str(i)))
        points.append(values)
        searcher.on_trial_complete(str(i), Outcome("completed", values[0], values[0], 1, values))
    return points


@pytest.mark.parametrize(
    "name, options",
    [
        ("optuna_nsga2", OptunaNSGA2Options(population_size=6)),
        ("optuna_motpe", OptunaMOTPEOptions()),
    ],
)
def test_multi_objective_searchers_find_a_better_front_than_random(name, options):
    """60 evaluations of ZDT1, 10 seeds: the front they find dominates more than random
    search's (measured: NSGA-II 0.41, MOTPE 0.51, random 0.29 of the best 0.67)."""
    seeds = range(10)
    found = np.mean([hypervolume(search(name, s, options)) for s in seeds])
    random = np.mean([hypervolume(search("random", s)) for s in seeds])
    assert found > random + 0.05, (found, random)


@pytest.mark.parametrize("name", ["optuna_nsga2", "optuna_motpe"])
def test_multi_objective_optuna_studies_have_one_direction_per_metric(name):
    searcher = searcher_class(name)(UNIT_SQUARE, ("acc", "params"), ("max", "min"), 8, 0)
    assert [d.name for d in searcher.study.directions] == ["MAXIMIZE", "MINIMIZE"]
    outcomes = [
        Outcome("completed", 0.9, 0.95, 4, (0.9, 1000)),
        Outcome("early_stopped", 0.8, 0.8, 2, (0.8, 500)),  # patience: its last values
        Outcome("completed", 0.9, 0.9, 4, (0.9, None)),  # a metric missing: failed
        Outcome("completed", 0.9, 0.9, 4, (0.9, "big")),  # or not a number
        Outcome("diverged", 0.1, 0.5, 2, (0.1, 500)),
        Outcome("error"),
    ]
    for i, outcome in enumerate(outcomes):
        searcher.suggest(str(i))
        searcher.on_trial_complete(str(i), outcome)
    searcher.observe({"x1": 0.5, "x2": 0.5}, Outcome("completed", 0.7, 0.7, 4, (0.7, 10)))
    told = [(t.state.name, t.values) for t in searcher.study.trials]
    assert told == [
        ("COMPLETE", [0.9, 1000]),
        ("COMPLETE", [0.8, 500]),
        ("FAIL", None),
        ("FAIL", None),
        ("FAIL", None),
        ("FAIL", None),
        ("COMPLETE", [0.7, 10]),
    ]


@pytest.mark.parametrize("name", ["optuna_nsga2", "optuna_motpe"])
def test_multi_objective_searchers_resume_where_they_stopped(name):
    import pickle

    options = searcher_class(name).Options()
    if name == "optuna_nsga2":
        options = OptunaNSGA2Options(population_size=4)  # several generations in 16 trials

    def build():
        return searcher_class(name)(UNIT_SQUARE, ("f1", "f2"), ("min", "min"), 16, 3, options)

    def drive(searcher, ids):
        configs = []
        for i in ids:
            config = searcher.suggest(str(i))
            values = zdt1(config)
            searcher.on_trial_complete(str(i), Outcome("completed", 0, 0, 1, values))
            configs.append(config)
        return configs

    a = build()
    drive(a, range(8))
    b = build()
    b.load_state_dict(pickle.loads(pickle.dumps(a.state_dict())))
    c = pickle.loads(pickle.dumps(a))  # the searcher itself pickles too
    later = drive(a, range(8, 16))
    assert drive(b, range(8, 16)) == later and drive(c, range(8, 16)) == later


# --- tables, `caviar best` and the report -----------------------------------------------------

MO_SPEC = {
    "name": "mo",
    **MO,
    "train": {"task": "digits", "model": "mlp", "max_epochs": 3},
    "space": {"hidden": {"randint": [4, 256]}},
    "searcher": {"name": "random"},
    "scheduler": {"name": "fifo"},
    "budget": {"num_samples": 6},
}


def mo_run(root):
    """Six trials: hidden 8 / 32 / 128 / 256 on the front, hidden 64 dominated (as accurate as
    hidden 32, larger), and one that raised."""
    records = []
    for i, (hidden, acc) in enumerate(
        ((8, 0.80), (32, 0.90), (64, 0.90), (128, 0.95), (256, 0.97))
    ):
        params = 64 * hidden + hidden * 10
        history = [
            {"epoch": e, "val_acc": acc - 0.1 * (3 - e), "params": params, "test_acc": acc - 0.01}
            for e in (1, 2, 3)
        ]
        config = {"max_epochs": 3, "hidden": hidden}
        records.append(results.TrialRecord(f"t{i}", config, history))
    records.append(results.TrialRecord("t5", {"max_epochs": 3, "hidden": 16}, [], "Error: x\n"))
    trials, history = results.build_tables(records, MO["metric"], MO["mode"], 3)
    trials["pareto"] = results.pareto(trials, MO["metric"], MO["mode"])
    run_dir = root / "mo"
    run_dir.mkdir()
    spec_yaml = yaml.safe_dump(MO_SPEC, sort_keys=False)
    (run_dir / "spec.yaml").write_text(spec_yaml)
    results.write_results(Location.of(run_dir), trials, history, spec_yaml)
    return run_dir


def test_tables_keep_each_metric_and_mark_the_front(tmp_path):
    run = analysis.load(mo_run(tmp_path))
    t = run.trials.set_index("trial_id")
    # Each metric's last and best values (best by its own mode).
    assert list(t.loc["t3", ["val_acc", "best_val_acc", "params", "best_params"]]) == [
        0.95,
        0.95,
        128 * 74,
        128 * 74,
    ]
    assert t["pareto"].to_dict() == {
        "t0": True,
        "t1": True,
        "t2": False,
        "t3": True,
        "t4": True,
        "t5": False,
    }
    # The leaderboard: the front first, each part by the first metric.
    assert list(analysis.leaderboard(run)["trial_id"]) == ["t4", "t3", "t1", "t0", "t2"]
    assert list(analysis.pareto_front(run)["trial_id"]) == ["t4", "t3", "t1", "t0"]
    assert run.metrics == ("val_acc", "params") and run.metric == "val_acc"
    # A table without the column (as another tool may write it) gets the same front.
    bare = run.trials.drop(columns="pareto")
    board = results.leaderboard(bare, run.metrics, run.modes)
    assert list(board["trial_id"]) == ["t4", "t3", "t1", "t0", "t2"]
    # One metric: no pareto column, ranked by the best value as before.
    assert "pareto" not in results.leaderboard(bare, "val_acc", "max")
    # A warm start from this run gives each trial's last values (none for the one that raised).
    space = parse_spec(MO_SPEC).trial_space()
    found, _ = results.earlier_trials([run.run_dir], space, MO["metric"])
    assert [o.objectives for _, o in found] == [
        (0.8, 592.0),
        (0.9, 2368.0),
        (0.9, 4736.0),
        (0.95, 9472.0),
        (0.97, 18944.0),
        None,
    ]


def test_best_lists_the_front_and_results_show_it_first(tmp_path, capsys):
    from caviar.cli import main

    run_dir = mo_run(tmp_path)
    assert main(["best", str(run_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "Pareto front: 4 of 5 trials (max val_acc, min params; each metric's last value)"
    )
    listed = [line for line in out if line.startswith("trial ")]
    assert listed == [
        "trial t4 (completed, 3 epochs): val_acc=0.97 params=18944 test_acc=0.96",
        "trial t3 (completed, 3 epochs): val_acc=0.95 params=9472 test_acc=0.94",
        "trial t1 (completed, 3 epochs): val_acc=0.9 params=2368 test_acc=0.89",
        "trial t0 (completed, 3 epochs): val_acc=0.8 params=592 test_acc=0.79",
    ]
    assert "  hidden: 256" in out and "  max_epochs: 3" in out
    assert main(["results", str(run_dir)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert re.split(r"\s+", table[1].strip())[:7] == [
        "trial_id",
        "status",
        "round",
        "epochs",
        "pareto",
        "val_acc",
        "params",
    ]
    assert [line.split()[0] for line in table[2:]] == ["t4", "t3", "t1", "t0", "t2"]
    # A trial of the front, as `analysis.best` gives it: its last epoch's values.
    b = analysis.best(analysis.load(run_dir), "t1")
    assert (b.value, b.best_epoch, b.config["hidden"]) == (0.9, 3, 32)


def test_report_of_several_metrics_plots_the_front(tmp_path):
    from matplotlib.lines import Line2D

    from caviar.html_report import render_report
    from tests.test_analysis import Page, says_no_data, write_fake_run

    run = analysis.load(mo_run(tmp_path))
    fig = analysis.plot_pareto_front(run)
    (front,) = [a for a in fig.axes[0].get_children() if isinstance(a, Line2D) and a.get_label()]
    assert front.get_label() == "Pareto front (4)"
    assert list(front.get_xdata()) == [0.8, 0.9, 0.95, 0.97]  # connected, by the first metric
    assert list(front.get_ydata()) == [592, 2368, 9472, 18944]
    assert fig.axes[0].get_yscale() == "log"  # params span decades
    page = Page(render_report(run))
    assert page.ids("figure")[0] == "pareto_front"
    assert {"front", "leaderboard"} <= set(page.ids("table")) and "best" not in page.ids("table")
    assert "Pareto front" in " ".join(page.text)
    # A run of one metric: no such plot in its report, and the plot says why.
    single = analysis.load(write_fake_run(tmp_path / "one"))
    assert "pareto_front" not in Page(render_report(single)).ids("figure")
    assert says_no_data(analysis.plot_pareto_front(single))


# --- a real sweep -----------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    "searcher", [{"name": "random"}, {"name": "optuna_nsga2", "population_size": 2}]
)
def test_a_sweep_of_two_metrics_finds_and_reports_its_front(
    write_spec, tmp_path, ray_head, searcher
):
    from tests.test_sweep import caviar, run_sweep

    spec = write_spec(
        {
            **MO,
            "train": {"task": "digits", "model": "mlp", "max_epochs": 2},
            "space": {"hidden": {"choice": [2, 8, 32, 128]}, "lr": 0.01},
            "searcher": searcher,
            "scheduler": {"name": "fifo"},
            "budget": {"num_samples": 4, "max_concurrent": 2},
        }
    )
    run_dir, trials, history = run_sweep(spec, tmp_path, ray_head)
    assert list(trials["status"]) == ["completed"] * 4
    # params: each model's size, an integer constant over its epochs, growing with hidden.
    assert (history.groupby("trial_id")["params"].nunique() == 1).all()
    sizes = trials.groupby("param_hidden")["params"].first()
    assert sizes.is_monotonic_increasing and (sizes == sizes.round()).all()
    # pareto: set for every trial, and by dominance of the last values.
    assert trials["pareto"].dtype == bool and trials["pareto"].any()
    points = list(zip(trials["val_acc"], trials["params"], strict=True))
    assert list(trials["pareto"]) == objective.pareto_front(points, ("max", "min"))
    front = set(trials.loc[trials["pareto"], "trial_id"])
    # `caviar best` lists the front; the report plots it.
    out = caviar("best", str(run_dir), cwd=tmp_path)
    listed = {line.split()[1] for line in out.splitlines() if line.startswith("trial ")}
    assert listed == front, out
    assert out.splitlines()[0].startswith(f"Pareto front: {len(front)} of 4 trials")
    report = caviar("report", str(run_dir), cwd=tmp_path).strip()
    assert '<figure id="pareto_front">' in Path(report).read_text()


def test_a_fused_population_reports_each_members_own_size():
    from caviar.train import DEFAULTS
    from caviar.train.data import load
    from caviar.train.models import build
    from caviar.train.population import Population

    data = load("synthetic")
    members = {"small": {"hidden": 8, "seed": 1}, "wide": {"hidden": 64, "depth": 2, "seed": 2}}
    population = Population(data, "mlp")
    for key, config in members.items():
        population.add(key, {**config, "max_epochs": 2})
    reported = {key: set() for key in members}
    while len(population):
        for key, metrics, _, _ in population.train_epoch():
            reported[key].add(metrics["params"])
    for key, config in members.items():
        own = build("mlp", data.shape, data.num_classes, {**DEFAULTS, **config})
        assert reported[key] == {sum(p.numel() for p in own.parameters())}, key
