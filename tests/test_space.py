import math

import numpy as np
import pytest

from caviar.space import Choice, Fixed, Float, Int, Numeric, parse_domain

RNG = np.random.default_rng(0)


def samples(domain, n=20000):
    rng = np.random.default_rng(1)
    return np.array([domain.sample(rng) for _ in range(n)])


def test_loguniform_median_is_geometric_mean():
    x = samples(parse_domain({"loguniform": [1e-5, 1e-1]}))
    assert x.min() >= 1e-5 and x.max() <= 1e-1
    assert math.log10(np.median(x)) == pytest.approx(-3.0, abs=0.05)
    # Equal effort per decade.
    counts = np.histogram(np.log10(x), bins=[-5, -4, -3, -2, -1])[0]
    assert counts.min() / counts.max() > 0.9


def test_one_minus_loguniform_spends_equal_effort_per_decade_of_1_minus_beta():
    x = samples(parse_domain({"one_minus_loguniform": [0.9, 0.999]}))
    assert x.min() >= 0.9 and x.max() <= 0.999
    assert np.median(x) == pytest.approx(1 - math.sqrt(0.1 * 0.001), abs=0.002)
    assert np.mean(x < 0.99) == pytest.approx(0.5, abs=0.02)


def test_randint_includes_both_bounds_uniformly():
    x = samples(parse_domain({"randint": [1, 4]}))
    values, counts = np.unique(x, return_counts=True)
    assert list(values) == [1, 2, 3, 4]
    assert counts.min() / counts.max() > 0.9


def test_lograndint_includes_both_bounds_and_favours_small_values():
    small = samples(parse_domain({"lograndint": [1, 16]}))
    assert small.min() == 1 and small.max() == 16
    # As Optuna does: log-uniform over [low - 0.5, high + 0.5], then rounded.
    x = samples(parse_domain({"lograndint": [1, 1000]}))
    assert np.median(x) == pytest.approx(math.sqrt(0.5 * 1000.5), rel=0.1)


def test_quantized_values_are_multiples_of_q_within_bounds():
    x = samples(parse_domain({"quniform": [0.0, 1.0, 0.25]}), 2000)
    assert set(np.round(x, 9)) == {0.0, 0.25, 0.5, 0.75, 1.0}
    y = samples(parse_domain({"qloguniform": [8, 512, 8]}), 2000)
    assert np.allclose(y % 8, 0) and y.min() >= 8 and y.max() <= 512


def test_choice_and_fixed():
    assert set(samples(parse_domain({"choice": ["a", "b"]}), 200)) == {"a", "b"}
    assert parse_domain(0.5) == Fixed(0.5)
    assert parse_domain({"value": [1, 2]}) == Fixed([1, 2])


@pytest.mark.parametrize(
    "domain",
    [
        Float(1e-4, 1.0, "log"),
        Float(0.9, 0.999, "one_minus_log"),
        Float(-1.0, 3.0),
        Int(2, 9),
        Int(1, 256, "log"),
        Choice(("sgd", "adamw")),
    ],
)
def test_unit_round_trip_and_raw_round_trip(domain):
    for u in np.linspace(0.01, 0.99, 25):
        v = domain.from_unit(u)
        assert domain.from_unit(domain.to_unit(v)) == pytest.approx(v)
    assert parse_domain(domain.to_raw()) == domain


@pytest.mark.parametrize(
    "domain",
    [Float(1e-4, 1.0, "log"), Float(0.9, 0.999, "one_minus_log"), Int(2, 9), Int(1, 256, "log")],
)
def test_numeric_domains_share_one_scale(domain):
    assert isinstance(domain, Numeric)
    # value_at is to_unit's exact inverse, also past the bounds (where from_unit clips).
    for u in (-0.5, 0.0, 0.3, 1.0, 1.2):
        assert domain.to_unit(domain.value_at(u)) == pytest.approx(u)
    assert domain.from_unit(1.2) == domain.high and domain.value_at(1.2) > domain.high
    # An integer domain's unit interval spans its bounds' half-steps.
    pad = 0.5 if isinstance(domain, Int) else 0.0
    assert domain.value_at(0.0) == pytest.approx(domain.low - pad)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"uniform": [1, 0]}, "needs low < high, found low=1 and high=0; swap them"),
        (
            {"uniform": [1, 1]},
            "needs low < high, found low=1 and high=1; for a fixed value write the value itself \\(1\\)",
        ),
        ({"uniform": [1, 1]}, "needs low < high"),
        ({"loguniform": [0, 1]}, "log scale and needs low > 0, found low=0"),
        ({"lograndint": [-1, 5]}, "log scale and needs low > 0"),
        ({"choice": []}, "choice needs a non-empty list of values"),
        ({"uniform": [0]}, r"uniform needs \[low, high\] as numbers"),
        ({"uniform": ["a", 1]}, r"uniform needs \[low, high\] as numbers, found \['a', 1\]"),
        ({"randint": [0.5, 3]}, "randint needs integer bounds"),
        ({"one_minus_loguniform": [0.9, 1.0]}, "needs 0 <= low < high < 1"),
        ({"loguniforn": [1, 2]}, "unknown distribution 'loguniforn'; did you mean 'loguniform'"),
        ({"uniform": [0, 1], "choice": [1]}, "expected exactly one of"),
        ([1, 2], r"found a bare list \[1, 2\]"),
    ],
)
def test_bad_domains(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_domain(raw)


CONDITIONAL = {
    "lr": {"loguniform": [1e-4, 1e-1]},
    "optimizer": {
        "choice": [
            {
                "name": "sgd",
                "momentum": {"one_minus_loguniform": [0.8, 0.999]},
                "nesterov": {"choice": [True, False]},
            },
            {"name": "adamw", "beta2": {"uniform": [0.9, 0.999]}},
            {"name": "adam"},
        ]
    },
}


def test_a_conditional_space_holds_each_branchs_parameters_only():
    import numpy as np

    from caviar.space import parse_space

    space, problems = parse_space(CONDITIONAL)
    assert problems == []
    assert space.names == ["lr", "optimizer", "momentum", "nesterov", "beta2"]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        config = space.sample(rng)
        branch = config["optimizer"]
        seen.add(branch)
        expected = {"lr", "optimizer"} | {
            "sgd": {"momentum", "nesterov"},
            "adamw": {"beta2"},
            "adam": set(),
        }[branch]
        assert set(config) == expected
    assert seen == {"sgd", "adamw", "adam"}
    assert space.to_raw() == CONDITIONAL
    assert space.is_active("beta2", {"optimizer": "adamw"})
    assert not space.is_active("beta2", {"optimizer": "sgd"})


def test_conditional_space_problems_name_the_option():
    from caviar.space import parse_space

    _, problems = parse_space(
        {
            "optimizer": {
                "choice": [{"momentum": 0.9}, {"name": "adamw", "beta2": {"uniform": [1, 0]}}]
            },
            "lr": {"choice": [{"name": "x", "lr": 1}]},
        }
    )
    assert problems[0].startswith("space.optimizer.choice[0]: a conditional option needs a 'name'")
    assert (
        problems[1]
        == "space.optimizer.adamw.beta2: uniform needs low < high, found low=1 and high=0; swap them"
    )
    assert len(problems) == 3 and "already a parameter" in problems[2]
