"""The contract every registered searcher must keep."""

import math
import pickle
import re
import sys

import numpy as np
import pytest

from caviar.errors import CaviarError, SpecError
from caviar.searchers import SEARCHERS, Outcome, options_class, searcher_class
from caviar.searchers.coarse_to_fine import CoarseToFineOptions, CoarseToFineSearcher, rank_key
from caviar.searchers.grid import GridOptions, GridSearcher, grid
from caviar.searchers.optuna import OptunaCmaEsOptions, OptunaTPEOptions
from caviar.searchers.tpe import TPEOptions
from caviar.space import Choice, Fixed, Float, Int, Space
from caviar.spec import parse_spec
from tests.conftest import QUICK_SPEC

SPEC = parse_spec(QUICK_SPEC)
OUTCOMES = [
    Outcome("completed", 0.9, 0.9, 4),
    Outcome("early_stopped", 0.5, 0.6, 1),
    Outcome("diverged", None, None, 2),
    Outcome("error", None, None, 0),
]


OPTIONS = {"grid": GridOptions(points=3)}  # the space has continuous domains


def build(name):
    cls = searcher_class(name)
    return cls(SPEC.trial_space(), "val_acc", "max", 12, seed=7, options=OPTIONS.get(name))


def drive(searcher, start, n):
    """Suggest n trials, completing each with one of the four outcomes."""
    configs = []
    for i in range(start, start + n):
        config = searcher.suggest(f"t{i}")
        if config is None:
            continue
        assert set(config) == set(SPEC.trial_space().names)
        configs.append(config)
        searcher.on_trial_complete(f"t{i}", OUTCOMES[i % len(OUTCOMES)])
    return configs


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_contract(name):
    a = build(name)
    first = drive(a, 0, 6)
    assert first, "suggested nothing"
    state = pickle.loads(pickle.dumps(a.state_dict()))
    b = build(name)
    b.load_state_dict(state)
    # A restored searcher proposes what the original would have.
    assert drive(b, 6, 6) == drive(a, 6, 6)
    assert isinstance(a.round_of("t0"), int)
    pickle.loads(pickle.dumps(a))


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_same_seed_same_configs(name):
    assert drive(build(name), 0, 5) == drive(build(name), 0, 5)


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_a_space_of_constants_gives_that_one_config(name):
    space = Space.from_dict({"lr": Fixed(0.01), "hidden": Fixed(32)})
    searcher = searcher_class(name)(space, "val_acc", "max", 3, seed=0)
    for i in range(3):
        assert searcher.suggest(f"t{i}") == {"lr": 0.01, "hidden": 32}
        searcher.on_trial_complete(f"t{i}", OUTCOMES[0])
    searcher.observe({"lr": 0.01, "hidden": 32}, OUTCOMES[0])


def in_domain(domain, value):
    if isinstance(domain, Choice):
        return value in domain.values
    if isinstance(domain, Fixed):
        return value == domain.value
    if isinstance(domain, Int) and not isinstance(value, int):
        return False
    return domain.low <= value <= domain.high


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_every_searched_parameter_reaches_every_config_inside_its_domain(name):
    space = parse_spec(
        {
            **QUICK_SPEC,
            "space": {
                "lr": {"loguniform": [1e-5, 1e-1]},
                "beta": {"one_minus_loguniform": [0.9, 0.999]},
                "width": {"lograndint": [8, 512]},
                "drop": {"quniform": [0.0, 0.5, 0.1]},
                "act": {"choice": ["relu", "gelu", ["nested", "list"]]},
            },
            "train": {"function": "m:f", "max_epochs": 3},
            "metric": "acc",
        }
    ).trial_space()
    searcher = searcher_class(name)(space, "acc", "max", 40, seed=1, options=OPTIONS.get(name))
    for i in range(40):
        config = searcher.suggest(str(i))
        if config is None:
            continue
        assert set(config) == set(space.names)
        for key, value in config.items():
            assert in_domain(space.domain(key), value), (key, value)
        searcher.on_trial_complete(str(i), Outcome("completed", config["lr"], config["lr"], 3))


def test_tpe_samples_log_domains_on_their_scale_not_hyperopts_natural_log_bounds():
    space = Space.from_dict({"lr": Float(1e-5, 1e-1, "log")})
    searcher = searcher_class("tpe")(space, "acc", "max", 50, options=TPEOptions(n_startup=50))
    lrs = np.array([searcher.suggest(str(i))["lr"] for i in range(50)])
    assert lrs.min() >= 1e-5 and lrs.max() <= 1e-1
    assert np.median(np.log10(lrs)) == pytest.approx(-3, abs=0.6)


def test_grid_covers_choices_in_order_and_repeats():
    space = Space.from_dict({"a": Choice((1, 2)), "b": Choice(("x", "y", "z")), "c": Fixed(0)})
    searcher = GridSearcher(space, "m", "max", 12)
    configs = [searcher.suggest(str(i)) for i in range(12)]
    assert len({tuple(c.values()) for c in configs}) == 6
    assert configs[:6] == configs[6:]
    assert GridSearcher.summary(space, GridOptions(), 12).startswith(
        "the grid has 6 configurations"
    )


def test_grid_points_on_each_domains_scale():
    space = Space.from_dict({"lr": Float(1e-4, 1e-2, "log"), "n": Int(1, 3)})
    lrs = sorted({c["lr"] for c in grid(space, 3)})
    assert lrs == pytest.approx([1e-4, 1e-3, 1e-2])
    assert sorted({c["n"] for c in grid(space, 3)}) == [1, 2, 3]


def test_coarse_to_fine_ranks_deeper_rungs_first():
    stopped = Outcome("early_stopped", 0.99, 0.99, 3)
    completed = Outcome("completed", 0.80, 0.85, 27)
    other = Outcome("completed", 0.70, 0.90, 27)
    order = sorted([stopped, completed, other], key=lambda o: rank_key(o, -1.0))
    assert order == [other, completed, stopped]


def quadratic(config):
    """Best at lr = 1e-3 (log scale) and momentum = 0.99."""
    return -((math.log10(config["lr"]) + 3) ** 2) - (math.log10(1 - config["momentum"]) + 2) ** 2


C2F_SPACE = Space.from_dict(
    {
        "lr": Float(1e-6, 1.0, "log"),
        "momentum": Float(0.5, 0.9999, "one_minus_log"),
        "opt": Choice(("sgd", "adam")),
    }
)


def run_c2f(options, n=60, objective=quadratic, space=C2F_SPACE):
    searcher = CoarseToFineSearcher(space, "f", "max", n, seed=0, options=options)
    for i in range(n):
        config = searcher.suggest(str(i))
        assert config is not None
        value = objective(config) + (5.0 if config["opt"] == "adam" else 0)
        searcher.on_trial_complete(str(i), Outcome("completed", value, value, 1))
    return searcher


@pytest.mark.parametrize("inner", ["random", "tpe"])
def test_coarse_to_fine_narrows_around_the_best_each_round(inner):
    searcher = run_c2f(CoarseToFineOptions(rounds=3, inner=inner))
    assert len(searcher.done) == 60
    regions = searcher.regions()
    assert [r["round"] for r in regions] == [0, 1, 2]
    assert [searcher.round_of(str(i)) for i in (0, 19, 20, 39, 40, 59)] == [0, 0, 1, 1, 2, 2]
    widths = [
        math.log10(r["space"]["lr"]["loguniform"][1] / r["space"]["lr"]["loguniform"][0])
        for r in regions
    ]
    assert widths[0] == pytest.approx(6) and widths[2] < widths[1] < widths[0]
    assert regions[-1]["space"]["opt"] == {"value": "adam"}
    # The last region holds the best configuration of the round before it.
    best = max((o.value, c) for _, r, c, o in searcher.done if r == 1)[1]
    lo, hi = regions[-1]["space"]["lr"]["loguniform"]
    assert lo <= best["lr"] <= hi
    if inner == "tpe":  # and, with TPE rounds, the optimum
        assert lo < 1e-3 < hi
        lo, hi = regions[-1]["space"]["momentum"]["one_minus_loguniform"]
        assert lo < 0.99 < hi


def test_coarse_to_fine_warns_at_an_edge_and_widens_only_when_allowed(caplog):
    space = Space.from_dict({"x": Float(0.0, 1.0), "opt": Choice(("sgd", "adam"))})

    def at_edge(config):
        return config["x"]  # best at the upper edge

    options = {"rounds": 3, "inner": "random"}
    searcher = run_c2f(CoarseToFineOptions(**options), 90, at_edge, space)
    assert "space.x: the best configurations of round 1 sit at the upper edge" in caplog.text
    assert "widening the range, or set searcher.widen: true" in caplog.text
    assert max(r["space"]["x"]["uniform"][1] for r in searcher.regions()) == 1.0
    widened = run_c2f(CoarseToFineOptions(**options, widen=True), 90, at_edge, space)
    assert widened.regions()[2]["space"]["x"]["uniform"][1] > 1.0


def test_coarse_to_fine_waits_for_the_round_to_end():
    searcher = CoarseToFineSearcher(C2F_SPACE, "f", "max", 4, options=CoarseToFineOptions(rounds=2))
    assert searcher.suggest("a") and searcher.suggest("b")
    assert searcher.suggest("c") is None  # round 0 still running
    searcher.on_trial_complete("a", Outcome("completed", 1.0, 1.0, 1))
    assert searcher.suggest("c") is None
    searcher.on_trial_complete("b", Outcome("error"))
    assert searcher.suggest("c") is not None and searcher.round_of("c") == 1


def test_coarse_to_fine_learns_from_a_trial_once_when_it_completes_twice():
    """Seen in the five-kills test: Ray's last snapshot before a kill held the searcher with a
    trial ended and the trial itself running, so the resumed sweep ran it again. Its second
    end is not learned again (it raised KeyError in the driver, at every resume)."""
    searcher = CoarseToFineSearcher(C2F_SPACE, "f", "max", 4, options=CoarseToFineOptions(rounds=2))
    assert searcher.suggest("a") and searcher.suggest("b")
    searcher.on_trial_complete("a", Outcome("completed", 1.0, 1.0, 1))
    restored = CoarseToFineSearcher(C2F_SPACE, "f", "max", 4, options=CoarseToFineOptions(rounds=2))
    restored.load_state_dict(searcher.state_dict())
    restored.on_trial_complete("a", Outcome("completed", 0.9, 1.0, 1))
    assert [d[0] for d in restored.done] == ["a"] and restored.round_of("a") == 0
    restored.on_trial_complete("b", Outcome("completed", 0.5, 0.5, 1))
    assert restored.suggest("c") is not None and restored.round_of("c") == 1


@pytest.mark.parametrize(
    "searcher, message",
    [
        ({"name": "tpe", "n_startup": "many"}, r"searcher.n_startup: expected a valid integer"),
        (
            {"name": "coarse_to_fine", "rounds": 0},
            r"searcher.rounds: expected greater than or equal to 1, found 0",
        ),
        (
            {"name": "coarse_to_fine", "top_fraction": 1.5},
            r"searcher.top_fraction: expected less than or equal to 1, found 1.5",
        ),
        (
            {"name": "coarse_to_fine", "top_fraction": 0},
            r"searcher.top_fraction: expected greater than 0",
        ),
        (
            {"name": "coarse_to_fine", "inner": "grid"},
            r"searcher.inner: expected 'random' or 'tpe', found 'grid'",
        ),
        (
            {"name": "coarse_to_fine", "round": 2},
            r"searcher.round: unknown option for searcher 'coarse_to_fine'; did you mean 'rounds'\?",
        ),
        (
            {"name": "grid"},
            r"space.lr: grid search needs values for a Float domain; write it as \{choice: \[...\]\} or set searcher.points",
        ),
        (
            {"name": "grid", "points": 2},
            r"budget.num_samples: the grid has 8 configurations, so num_samples must be a multiple of 8, found 7",
        ),
        (
            {"name": "nope"},
            r"searcher.name: unknown searcher 'nope' \(expected one of random, grid, tpe, coarse_to_fine, optuna_tpe, optuna_cmaes, optuna_motpe, optuna_nsga2, or 'module:Class'\)",
        ),
    ],
)
def test_bad_searcher_specs(searcher, message):
    with pytest.raises(SpecError) as e:
        parse_spec({**QUICK_SPEC, "searcher": searcher, "budget": {"num_samples": 7}})
    assert any(re.search(message, p) for p in e.value.problems), e.value.problems


@pytest.mark.parametrize("name", ["random", "grid", "tpe", "coarse_to_fine"])
def test_every_searcher_searches_a_conditional_space(name):
    from caviar.searchers import Outcome, searcher_class
    from caviar.space import parse_space

    space, _ = parse_space(
        {
            "x": {"choice": [1, 2]},
            "optimizer": {
                "choice": [
                    {"name": "sgd", "momentum": {"choice": [0.5, 0.9]}},
                    {"name": "adamw", "beta2": {"choice": [0.99, 0.999]}},
                ]
            },
        }
    )
    searcher = searcher_class(name)(space, "acc", "max", 12, 0)
    branches = set()
    for i in range(12):
        config = searcher.suggest(str(i))
        if config is None:
            continue
        active = space.active(config)
        branch = active["optimizer"]
        branches.add(branch)
        assert set(active) == {"x", "optimizer", "momentum" if branch == "sgd" else "beta2"}
        searcher.on_trial_complete(str(i), Outcome("completed", 0.5, 0.5, 1))
    assert branches == {"sgd", "adamw"}
    if name == "grid":  # 2 x (2 + 2) distinct configurations, not 2 x 2 x 2 x 2
        from caviar.searchers.grid import grid

        assert len(grid(space, None)) == 8


def test_optuna_cmaes_refuses_choices_at_validation():
    with pytest.raises(
        SpecError,
        match=r"space.batch_size: searcher optuna_cmaes searches numeric domains only, found a "
        r"choice of 2 values; use searcher optuna_tpe, or make batch_size fixed \(train.fixed\)",
    ):
        parse_spec({**QUICK_SPEC, "searcher": {"name": "optuna_cmaes"}})
    numeric = {k: v for k, v in QUICK_SPEC["space"].items() if k != "batch_size"}
    parse_spec({**QUICK_SPEC, "space": numeric, "searcher": {"name": "optuna_cmaes"}})


def test_optuna_tpe_constant_liar_spreads_trials_suggested_while_others_run():
    space = Space.from_dict({"x": Float(0.0, 1.0), "opt": Choice(("a", "b", "c"))})
    searcher = searcher_class("optuna_tpe")(
        space, "f", "max", 20, seed=0, options=OptunaTPEOptions(n_startup=10)
    )
    for i in range(10):
        config = searcher.suggest(str(i))
        value = -((config["x"] - 0.3) ** 2) - (config["opt"] != "a")
        searcher.on_trial_complete(str(i), Outcome("completed", value, value, 1))
    running = [searcher.suggest(f"r{i}") for i in range(8)]  # none completes
    assert len({tuple(c.items()) for c in running}) == 8
    # Without the liar every one of them takes the best choice seen, "a".
    assert {c["opt"] for c in running} != {"a"}


@pytest.mark.parametrize(
    "name, options", [("optuna_tpe", OptunaTPEOptions(n_startup=10)), ("optuna_cmaes", None)]
)
def test_optuna_warm_start_via_observe(name, options):
    """Observed trials from an earlier sweep (best at lr = 0.1) steer the first suggestions."""
    space = Space.from_dict({"lr": Float(1e-5, 1.0, "log"), "y": Float(0.0, 1.0)})

    def value(config):
        return -((math.log10(config["lr"]) + 1) ** 2)

    def distance(searcher):
        """Median |log10(lr) + 1| of 10 trials, each told before the next is asked."""
        lrs = []
        for i in range(10):
            config = searcher.suggest(str(i))
            searcher.on_trial_complete(
                str(i), Outcome("completed", value(config), value(config), 3)
            )
            lrs.append(config["lr"])
        return np.median(np.abs(np.log10(lrs) + 1))

    warm = searcher_class(name)(space, "f", "max", 10, seed=0, options=options)
    rng = np.random.default_rng(0)
    for _ in range(30):
        config = {"lr": 10 ** rng.uniform(-5, 0), "y": rng.random()}
        warm.observe(config, Outcome("completed", value(config), value(config), 3))
    warm.observe({"lr": 3.0, "y": 0.5}, Outcome("completed", 9.0, 9.0, 3))  # outside: skipped
    assert len(warm.study.trials) == 30
    cold = searcher_class(name)(space, "f", "max", 10, seed=0, options=options)
    assert distance(warm) < 0.5 * distance(cold)


def test_optuna_tells_early_stopped_trials_as_pruned_at_their_epoch_and_faults_as_failed():
    searcher = build("optuna_tpe")
    for i, outcome in enumerate(OUTCOMES):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", outcome)
    searcher.observe(searcher.suggest("t4"), Outcome("early_stopped", 0.4, 0.7, 3))
    told = [(t.state.name, t.value, t.intermediate_values) for t in searcher.study.trials]
    assert told == [
        ("COMPLETE", 0.9, {}),
        ("PRUNED", 0.6, {1: 0.6}),
        ("FAIL", None, {}),
        ("FAIL", None, {}),
        ("RUNNING", None, {}),  # t4, still running
        ("PRUNED", 0.7, {3: 0.7}),
    ]
    assert searcher.study.direction.name == "MAXIMIZE"


@pytest.mark.parametrize(
    "name, missing",
    [("optuna_tpe", "optuna"), ("optuna_cmaes", "optuna"), ("optuna_cmaes", "cmaes")],
)
def test_optuna_searchers_say_what_to_install(monkeypatch, name, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # as if not installed
    message = f"searcher {name} needs {missing}: pip install {missing}"
    with pytest.raises(CaviarError, match=message):
        options_class(name)
    with pytest.raises(CaviarError, match=message):
        searcher_class(name)(SPEC.trial_space(), "val_acc", "max", 4, options=OptunaCmaEsOptions())
    with pytest.raises(SpecError, match=f"searcher.name: cannot load '{name}': {message}"):
        parse_spec({**QUICK_SPEC, "searcher": {"name": name}})
