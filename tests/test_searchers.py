"""The contract every registered searcher must keep."""

import pickle

import pytest

from caviar.searchers import SEARCHERS, Outcome, searcher_class
from caviar.spec import parse_spec
from tests.conftest import QUICK_SPEC

SPEC = parse_spec(QUICK_SPEC)
OUTCOMES = [
    Outcome("completed", 0.9, 0.9, 4),
    Outcome("early_stopped", 0.5, 0.6, 1),
    Outcome("diverged", None, None, 2),
    Outcome("error", None, None, 0),
]


def build(name):
    return searcher_class(name)(SPEC.trial_space(), "val_acc", "max", 12, seed=7)


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
