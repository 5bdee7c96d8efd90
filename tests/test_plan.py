"""caviar.plan: rung counts simulated before a launch, and `caviar plan`."""

import numpy as np
import pytest

from caviar import plan
from caviar.spec import parse_spec
from tests.conftest import QUICK_SPEC, caviar_cli


def spec(**overrides):
    return parse_spec({**QUICK_SPEC, "budget": {"num_samples": 60}, **overrides})


def test_fifo_trains_everything_and_asha_roughly_a_third_per_rung():
    fifo = plan.expected_rungs(spec(scheduler={"name": "fifo"}))
    assert [(r.epoch, r.trials, r.epochs) for r in fifo] == [(4, 60, 240)]
    asha = plan.expected_rungs(
        spec(
            scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2},
            train={"task": "digits", "max_epochs": 8},
        )
    )
    assert [r.epoch for r in asha] == [1, 2, 4, 8]
    assert asha[0].trials == 60
    # Asynchronous halving is lenient early in a sweep: more than 60 / 2**k reach rung k.
    for k, r in enumerate(asha[1:], start=1):
        assert 60 / 2**k < r.trials < 60 and r.low <= r.trials <= r.high
    assert sum(r.epochs for r in asha) < 60 * 8


@pytest.mark.parametrize("name", ["hyperband", "median"])
def test_a_plan_does_not_call_a_stopping_rule_it_does_not_simulate_an_expectation(name):
    text = plan.make_plan(spec(scheduler={"name": name}), concurrency=2).text()
    assert f"at most 240 epochs: {name}'s stops are not simulated" in text
    assert "expected total" not in text


def test_caviars_plan_also_states_the_cost_when_no_rung_is_trusted():
    p = plan.make_plan(spec(scheduler={"name": "caviar"}), concurrency=2, epoch_seconds=0.5)
    assert p.scheduler == "caviar" and p.epochs_if_all_trusted == 60 * 4
    assert p.wall_seconds == pytest.approx(p.epochs * 0.5 / 2)
    text = p.text()
    assert "60 trials x 4 epochs = 240 epochs without early stopping; scheduler caviar" in text
    assert "where none does, it stops nothing: 240 epochs" in text


@pytest.mark.integration  # imports Ray
def test_the_asha_simulation_makes_rays_own_decisions():
    from ray.tune.schedulers import ASHAScheduler

    class Trial:
        def __init__(self, i):
            self.trial_id = str(i)

    curves = plan._curves(np.random.default_rng(3), 40, 9)
    ray_asha = ASHAScheduler(
        time_attr="epoch", metric="acc", mode="max", max_t=9, grace_period=1, reduction_factor=3
    )
    stops = []
    for i, curve in enumerate(curves):
        trial = Trial(i)
        ray_asha.on_trial_add(None, trial)
        stop = 9
        for epoch, value in enumerate(curve, start=1):
            if ray_asha.on_trial_result(None, trial, {"epoch": epoch, "acc": value}) == "STOP":
                stop = epoch
                break
        stops.append(min(stop, 9))
    assert plan._asha_reached(curves, 1, 3, 9) == stops


def test_cli_plan_without_probe():
    out = caviar_cli("plan", "--no-probe", "examples/quickstart.yaml", without_ray=True)
    assert out.returncode == 0, out.stderr
    assert "scheduler asha" in out.stdout and "expected total:" in out.stdout


def test_cli_plan_of_a_function_of_your_own_says_why_it_gives_no_wall_time(write_spec, tmp_path):
    path = write_spec({"train": {"function": "mytrain:train", "max_epochs": 3}})
    out = caviar_cli("plan", str(path), cwd=tmp_path, without_ray=True)
    assert out.returncode == 0, out.stderr
    assert (
        "wall time: not estimated; the probe times the built-in train function only, and "
        "mytrain:train is not run before the sweep"
    ) in out.stdout


def test_a_fused_plan_probes_a_whole_group_and_counts_its_members():
    fused = spec(resources={"cpu": 1, "gpu": 0, "fuse": 4}, budget={"num_samples": 60})
    seconds = plan.probe(fused)
    assert seconds > 0
    concurrency = plan.local_concurrency(fused)
    assert concurrency == plan.local_concurrency(spec(resources={"cpu": 1, "gpu": 0})) * 4
    made = plan.make_plan(fused, concurrency, seconds)
    assert made.wall_seconds == pytest.approx(made.epochs * seconds / concurrency)
    assert f"s per epoch of a fused group of 4; {concurrency} trials at a time" in made.text()
    # On 2 CPUs, 8 members train as two groups of 4, one per CPU: the probe times one.
    two = spec(resources={"cpu": 2, "gpu": 0, "fuse": 8}, budget={"num_samples": 60})
    made = plan.make_plan(two, 8, seconds)
    assert made.wall_seconds == pytest.approx(made.epochs * seconds / 8)
    assert "s per epoch of a fused group of 4; 8 trials at a time" in made.text()
    # A member holds a quarter of its group's GPU share.
    gpu = plan.make_plan(spec(resources={"cpu": 1, "gpu": 0.5, "fuse": 4}), 8, seconds)
    assert gpu.gpu_hours == pytest.approx(gpu.epochs * seconds * 0.5 / 4 / 3600)
