"""caviar.stopping: the early-stopping rule that checks its own premise (no Ray)."""

import math
import pickle

import numpy as np
import pytest

from caviar.stopping import (
    CONTINUE,
    STOP,
    Stopping,
    StoppingOptions,
    forecast,
    ridge,
    rungs_of,
    spearman,
)


def test_rungs_and_spearman():
    assert rungs_of(StoppingOptions(), 27) == [1, 3, 9]
    assert rungs_of(StoppingOptions(min_epochs=2, reduction_factor=2), 16) == [2, 4, 8]
    # Rungs are whole epochs, the one each is reached at; a factor near 1 repeats none.
    assert rungs_of(StoppingOptions(reduction_factor=1.5), 27) == [1, 2, 3, 4, 6, 8, 12, 18, 26]
    assert rungs_of(StoppingOptions(reduction_factor=1.1), 6) == [1, 2, 3, 4, 5]
    assert rungs_of(StoppingOptions(reduction_factor=1.01), 27) == list(range(1, 27))
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9487, abs=1e-4)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def play(rule, trials, epochs):
    """Report each trial's curve epoch by epoch, one trial after another; the decisions."""
    decisions = {}
    for trial_id, curve in trials.items():
        rule.on_add(trial_id)
        for epoch in range(1, epochs + 1):
            if rule.on_result(trial_id, epoch, curve(epoch)) == STOP:
                decisions[trial_id] = epoch
                break
    return decisions


def agreeing(quality):
    return lambda epoch: quality * (1 - math.exp(-epoch / 3))


def test_no_stop_while_the_agreement_is_unknown_then_stops_where_it_holds():
    rule = Stopping("max", 9, StoppingOptions(min_pairs=8))
    first = {f"a{i}": agreeing(0.5 + i / 20) for i in range(8)}
    assert play(rule, first, 9) == {}  # the first 8 all train fully: nothing measured yet
    measured = rule.agreement(1)
    assert (measured.rho, measured.pairs, measured.reference) == (pytest.approx(1.0), 8, 9)
    assert measured.winner_kept and measured.key == "best"
    assert rule.trusted(1) and rule.trusted(3)
    later = {f"b{i}": agreeing(0.3 + i / 100) for i in range(4)}  # all worse than the first
    stopped = play(rule, later, 9)
    assert stopped == dict.fromkeys(later, 1)
    assert rule.audit()[0] | {"noise": None} == {
        "rung": 1,
        "reached": 12,
        "stopped": 4,
        "stopped_hopeless": 0,
        "spared_by_noise": 0,
        "agreement": pytest.approx(1.0),
        "pairs": 8,
        "reference": 9,
        "winner_kept": True,
        "ranked_by": "best",
        "trusted": True,
        "noise": None,
        "warning": None,
    }


def test_no_stop_at_a_rung_whose_ranking_says_nothing_of_the_final_one():
    rule = Stopping("max", 9, StoppingOptions(min_pairs=8))

    def curve(start, quality):  # epoch 1 at `start`, then at `quality`
        return lambda epoch: start if epoch == 1 else quality

    # Epoch 1 ranks them in an order unrelated to the final one, by any rule.
    starts = [0.25, 0.1, 0.4, 0.3, 0.15, 0.45, 0.2, 0.35]
    first = {f"a{i}": curve(s, 0.5 + i / 20) for i, s in enumerate(starts)}
    play(rule, first, 9)
    for key in ("best", "forecast", "learned"):
        measured = rule._agreement_of(1, key)
        assert measured.rho < 0.3 and measured.pairs == 8 and measured.reference == 9
    assert not rule.trusted(1)
    later = {f"b{i}": curve(0.01 * i, 0.3 + i / 50) for i in range(6)}
    assert 1 not in play(rule, later, 9).values()  # rung 1 never stops anyone
    assert rule.audit()[0]["stopped"] == 0 and rule.audit()[0]["trusted"] is False


def test_learns_a_ranking_that_runs_backwards():
    """Fast starters plateau low, slow ones climb high: at epoch 1 the best so far ranks them
    backwards (ASHA's ranking cuts the winners), a regression of the final value on the value
    at epoch 1 learns the ranking, and the rung trusts it."""
    rule = Stopping("max", 9, StoppingOptions(min_pairs=8))

    def slow_starter(quality):  # the better, the longer its ramp to `quality`
        ramp = 1 + 8 * (quality - 0.3) / 0.55
        return lambda epoch: quality * min(1.0, epoch / ramp)

    play(rule, {f"a{i}": slow_starter(0.5 + i / 20) for i in range(8)}, 9)
    assert rule._agreement_of(1, "best").rho == pytest.approx(-1.0)
    measured = rule.agreement(1)
    assert measured.key == "learned" and measured.rho == pytest.approx(1.0)
    assert rule.trusted(1)
    # A fast starter headed low leads at epoch 1 and stops there; a slow one goes on.
    assert slow_starter(0.4)(1) > slow_starter(0.8)(1)
    assert play(rule, {"fast": slow_starter(0.4), "slow": slow_starter(0.8)}, 9) == {"fast": 1}
    assert rule.audit()[0]["ranked_by"] == "learned"


def test_ridge_leave_one_out_predictions_are_fits_without_the_point():
    """Exactly so with the columns scaled as for all points (as `ridge` scales them)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    y = x @ [1.0, -2.0, 0.5] + rng.normal(0, 0.1, 12)
    loo, fit, gain = ridge(x, y)
    for i in range(12):
        rest = np.arange(12) != i
        d = np.column_stack([np.ones(11), x[rest]])
        coef = np.linalg.solve(d.T @ d + np.diag([0.0, 1.0, 1.0, 1.0]), d.T @ y[rest])
        assert coef @ [1.0, *x[i]] == pytest.approx(loo[i])
    assert fit(x) == pytest.approx(y, abs=0.5)
    assert gain == pytest.approx(np.linalg.norm([1.0, -2.0, 0.5]), rel=0.2)


def saturating(quality, tau):
    return lambda epoch: 0.1 + (quality - 0.1) * (1 - math.exp(-epoch / tau))


def test_forecast_of_a_learning_curve():
    """Lower is better: the negated accuracy. A curve still climbing forecasts its plateau, a
    plateau forecasts itself, and a curve getting worse its best so far."""
    epochs = list(range(1, 10))
    for quality, tau in ((0.98, 12), (0.6, 2.3), (0.75, 6)):
        curve = saturating(quality, tau)
        ahead = forecast(epochs, [-curve(e) for e in epochs], 27)
        assert ahead == pytest.approx(-curve(27), abs=0.02)
    assert forecast(epochs, [-0.5] * 9, 27) == pytest.approx(-0.5)
    assert forecast(epochs, [-0.9 + 0.01 * e for e in epochs], 27) == pytest.approx(-0.89)
    assert forecast([1, 2], [-0.2, -0.4], 27) == -0.4  # too short to fit: its best


def test_ranks_by_forecast_where_slow_starters_win_and_best_so_far_disagrees():
    """The better the configuration, the slower it starts (caviar's `disagree` family): at
    epoch 9 of 27 the best so far ranks them backwards, where each curve is headed does not."""
    rule = Stopping("max", 27, StoppingOptions(min_pairs=8))

    def slow_starter(quality):
        return saturating(quality, 1 + 11 * (quality - 0.55) / 0.43)

    play(rule, {f"a{i}": slow_starter(0.55 + i * 0.05) for i in range(9)}, 27)
    for rung in (3, 9):  # noiseless curves: forecast from 3 epochs on
        measured = rule.agreement(rung)
        assert measured.key == "forecast" and measured.rho > 0.9 and rule.trusted(rung)
        assert rule._agreement_of(rung, "best").rho < 0  # what ASHA ranks by
    # One epoch is no curve; it is ranked by a regression on the trials that went on.
    assert rule.agreement(1).key == "learned"
    # A fast starter on a low plateau leads every slow one early, and stops; a slow starter
    # headed higher than all goes on.
    assert slow_starter(0.6)(3) > slow_starter(0.95)(3)
    assert play(rule, {"fast": slow_starter(0.6), "slow": slow_starter(0.95)}, 27) == {"fast": 1}
    assert [row["ranked_by"] for row in rule.audit()] == ["learned", "forecast", "forecast"]


def test_stops_a_hopeless_trial_that_leads_its_neighbours():
    """A searcher that improves as it learns sends trials each better than the last few: a cut
    among recent trials passes them all. Those with no chance of beating the best go anyway."""

    def sweep(hopeless):
        # window 1: the cut among recent trials at its most lenient, it passes every trial
        rule = Stopping("max", 9, StoppingOptions(min_pairs=8, window=1, hopeless=hopeless))
        play(rule, {f"a{i}": agreeing(0.5 + i / 20) for i in range(8)}, 9)
        # all far below the first eight
        return rule, play(rule, {f"b{i}": agreeing(0.2 + i / 100) for i in range(6)}, 9)

    assert sweep(hopeless=0.0)[1] == {}
    rule, stopped = sweep(hopeless=StoppingOptions.hopeless)
    assert stopped == {f"b{i}": 1 for i in range(6)}
    assert rule.audit()[0]["stopped_hopeless"] == 6
    # The line it predicts with: the value at epoch 9 from the value at epoch 1.
    measured = rule.agreement(1)
    assert measured.slope > 0 and measured.spread < 1e-3
    # One headed above the best goes on (these curves have no noise: a hair below is hopeless).
    assert play(rule, {"c": agreeing(0.9)}, 9) == {}


def test_early_values_all_alike_predict_nothing():
    rule = Stopping("max", 9, StoppingOptions(min_pairs=4))
    curves = {f"a{i}": (lambda q: lambda e: 0.1 if e == 1 else q)(0.5 + i / 10) for i in range(4)}
    play(rule, curves, 9)
    measured = rule._agreement_of(1, "best")
    assert math.isnan(measured.rho) and measured.slope == pytest.approx(0, abs=1e-6)
    assert not rule.trusted(1) and not rule._hopeless(-0.1, measured, 0.0)


def test_keeps_each_curve_up_to_the_last_rung_and_takes_reports_that_skip_epochs():
    rule = Stopping("max", 27, StoppingOptions(min_pairs=2))
    play(rule, {"a": agreeing(0.5)}, 27)
    assert [e for e, _ in rule.history["a"]] == list(range(1, 10))  # rungs 1, 3, 9
    # A trial that first reports after the last rung (a function reporting every 10 epochs).
    for epoch in (10, 20, 27):
        assert rule.on_result("sparse", epoch, 0.6) == CONTINUE
    assert rule.ahead["9"]["sparse"] == 0.6 and "sparse" not in rule.history


def test_compares_best_so_far_and_spares_trials_within_noise_of_the_cut():
    rule = Stopping("max", 9, StoppingOptions(min_pairs=4, noise_z=2.0))
    for i in range(4):
        rule.on_add(f"a{i}")
        for epoch in range(1, 10):
            # jittery curves: +-0.02 around a level, the level sets the rank everywhere
            rule.on_result(f"a{i}", epoch, 0.5 + 0.1 * i + (0.02 if epoch % 2 else -0.02))
    assert rule.noise() > 0.01
    # Its best so far at rung 3 is 0.95 although its value there is 0.52: it goes on.
    rule.on_add("peak")
    for epoch, value in ((1, 0.81), (2, 0.95), (3, 0.52)):
        assert rule.on_result("peak", epoch, value) == CONTINUE
    # Just below the cut, within noise: spared; far below: stopped.
    rule.on_add("close")
    assert rule.on_result("close", 1, 0.77) == CONTINUE
    rule.on_add("far")
    assert rule.on_result("far", 1, 0.1) == STOP
    assert sum(r["spared_by_noise"] for r in rule.audit()) >= 1


def test_minimizing_and_the_noise_of_repeated_seeds():
    rule = Stopping("min", 3, StoppingOptions(min_pairs=3, reduction_factor=3))
    for i, loss in enumerate((0.1, 0.2, 0.3)):
        rule.on_add(f"t{i}", repeat_key="same" if i < 2 else None)
        for epoch in range(1, 4):
            rule.on_result(f"t{i}", epoch, loss + 1 / epoch)
    # t0 and t1 are one configuration with two seeds: their final values differ by 0.1
    assert rule.noise() == pytest.approx(0.1 / math.sqrt(2))
    rule.on_add("bad")
    assert rule.on_result("bad", 1, 5.0) == STOP  # a loss far above the cut
    rule.on_add("good")
    assert rule.on_result("good", 1, 0.5) == CONTINUE


def test_state_round_trips_through_pickle():
    rule = Stopping("max", 9, StoppingOptions(min_pairs=4))
    play(rule, {f"a{i}": agreeing(0.5 + i / 10) for i in range(5)}, 9)
    fresh = Stopping("max", 9, StoppingOptions(min_pairs=4))
    fresh.load_state_dict(pickle.loads(pickle.dumps(rule.state_dict())))
    assert fresh.audit() == rule.audit()
    assert fresh.on_result("x", 1, 0.01) == rule.on_result("y", 1, 0.01) == STOP


def test_a_state_saved_with_rungs_between_whole_epochs_resumes_on_whole_ones():
    """Before rungs were whole epochs, a factor of 1.5 recorded values at "1.5", "2.25", ...;
    such a state restores onto the epochs those rungs were reached at."""
    options = StoppingOptions(min_pairs=4, reduction_factor=1.5)
    rule = Stopping("max", 9, options)
    play(rule, {f"a{i}": agreeing(0.5 + i / 10) for i in range(5)}, 9)
    assert play(rule, {"low": agreeing(0.1)}, 9) == {"low": 1}
    state = rule.state_dict()
    was = dict(
        zip(
            ["1", "2", "3", "4", "6", "8"],
            ["1", "1.5", "2.25", "3.375", "5.0625", "7.59375"],
            strict=True,
        )
    )
    old = {k: v for k, v in state.items() if k not in ("at", "ahead", "pending", "stopped")}
    for name in ("at", "ahead", "spared", "hopeless"):
        old[name] = {was.get(k, k): v for k, v in state[name].items()}
    old["stopped"] = {t: float(was[str(r)]) for t, r in state["stopped"].items()}
    old["pending"] = {t: [float(was[str(r)]) for r in p] for t, p in state["pending"].items()}
    assert any(old["pending"].values())
    restored = Stopping("max", 9, options)
    restored.load_state_dict(pickle.loads(pickle.dumps(old)))
    assert restored.state_dict() == state
    assert restored.on_result("x", 1, 0.01) == rule.on_result("y", 1, 0.01) == STOP


def test_a_warning_when_a_rung_stopped_trials_and_its_agreement_fell_below_trust():
    rule = Stopping("max", 9, StoppingOptions(min_pairs=4))
    play(rule, {f"a{i}": agreeing(0.5 + i / 10) for i in range(4)}, 9)
    play(rule, {"low": agreeing(0.1)}, 9)
    assert rule.audit()[0]["stopped"] == 1 and rule.audit()[0]["warning"] is None
    # Later trials that passed rung 1 ranked the other way round at the end.
    for i in range(8):
        early = rule.at["1"][f"b{i}"] = rule.ahead["1"][f"b{i}"] = 0.5 + i / 100
        rule.at["9"][f"b{i}"] = 1.4 - early
    row = rule.audit()[0]
    assert not row["trusted"] and row["agreement"] < 0.5
    assert row["warning"].startswith("1 trials stopped at a rung no longer trusted (agreement")


def test_a_stopped_trial_that_reports_again_is_stopped_again():
    """A driver interrupted after the rule's STOP but before Ray ended the trial restores it
    from the experiment's checkpoint; the rule's decision stands."""
    rule = Stopping("max", 9, StoppingOptions(min_pairs=8))
    play(rule, {f"a{i}": agreeing(0.5 + i / 20) for i in range(8)}, 9)
    assert play(rule, {"b": agreeing(0.3)}, 9) == {"b": 1}
    restored = Stopping("max", 9, StoppingOptions(min_pairs=8))
    restored.load_state_dict(pickle.loads(pickle.dumps(rule.state_dict())))
    assert restored.on_result("b", 2, agreeing(0.3)(2)) == STOP
    assert restored.stopped == {"b": 1} and restored.audit()[0]["stopped"] == 1


def test_a_trials_last_report_is_never_a_stop():
    """A trial that passed rung 1 untrusted and reports its last epoch once the rung is
    trusted has finished: it is not counted as stopped there."""
    rule = Stopping("max", 9, StoppingOptions(min_pairs=8))
    late = agreeing(0.3)
    for epoch in range(1, 9):
        assert rule.on_result("late", epoch, late(epoch)) == CONTINUE
    play(rule, {f"a{i}": agreeing(0.5 + i / 20) for i in range(8)}, 9)
    assert rule.trusted(1)
    assert rule.on_result("late", 9, late(9)) == CONTINUE
    assert "late" not in rule.stopped and rule.audit()[0]["stopped"] == 0
