import math

import numpy as np
import pytest
import torch

import caviar
from caviar import session


def run(fn, config=None, metric="score"):
    return session.run(fn, config or {}, session.Session(metric)).results


def test_reports_are_recorded_and_checkpoints_round_trip():
    def fn(config):
        assert caviar.get_checkpoint() is None
        for epoch in (1, 2):
            caviar.report({"epoch": epoch, "score": epoch * 0.5}, checkpoint={"epoch": epoch})

    s = session.run(fn, {}, session.Session("score"))
    assert [r["epoch"] for r in s.results] == [1, 2]
    assert s.get_checkpoint() == {"epoch": 2}


def test_one_shot_objective_returns_its_metrics():
    (result,) = run(lambda config: {"score": config["x"] * 2}, {"x": 3})
    assert result["score"] == 6 and result["epoch"] == 1 and result[session.FINAL]


def test_epoch_defaults_to_the_next_and_is_an_integer_from_1():
    def counts(config):
        caviar.report({"score": 1.0})
        caviar.report({"epoch": 2, "score": 1.0})
        caviar.report({"score": 1.0})
        return {"score": 2.0}

    assert [r["epoch"] for r in run(counts)] == [1, 2, 3, 4]
    # A restored trial goes on from its checkpoint's epoch.
    s = session.Session("score", checkpoint={"epoch": 5})
    session.run(lambda c: caviar.get_checkpoint() and caviar.report({"score": 1.0}), {}, s)
    assert s.results[-1]["epoch"] == 6
    with pytest.raises(
        session.ReportError, match="metrics need an integer 'epoch' >= 1, found None; report"
    ):
        run(lambda c: caviar.report({"epoch": None, "score": 1.0}))
    with pytest.raises(session.ReportError, match="found 1.5"):
        run(lambda c: caviar.report({"epoch": 1.5, "score": 1.0}))
    assert run(lambda c: caviar.report({"epoch": 2.0, "score": 1.0}))[0]["epoch"] == 2
    # A loop counting from 0 would never reach max_epochs: every trial would end early_stopped.
    with pytest.raises(session.ReportError, match="found 0; epochs count from 1, .* epoch \\+ 1"):
        run(lambda c: caviar.report({"epoch": 0, "score": 1.0}))


def test_epochs_go_up_within_a_run_and_a_returned_dict_may_restate_the_last():
    """A second report of an epoch would replace the first in the history: refused."""

    def twice(config):
        caviar.report({"epoch": 1, "score": 0.5, "train_loss": 1.0})
        caviar.report({"epoch": 1, "score": 0.5, "val_loss": 1.2})

    with pytest.raises(session.ReportError, match="epoch 1 reported after epoch 1; the later"):
        run(twice)
    with pytest.raises(session.ReportError, match="epoch 1 reported after epoch 2"):
        run(lambda c: [caviar.report({"epoch": e, "score": 1.0}) for e in (1, 2, 1)])

    def returns_the_last(config):
        caviar.report({"epoch": 1, "score": 0.5})
        return {"epoch": 1, "score": 0.5, "test_score": 0.4}

    assert run(returns_the_last)[-1]["test_score"] == 0.4
    # A resumed trial replays from its checkpoint's epoch: its first report may go back.
    s = session.Session("score", checkpoint={"epoch": 3})
    session.run(
        lambda c: caviar.get_checkpoint() and caviar.report({"epoch": 2, "score": 1}), {}, s
    )
    assert s.results[-1]["epoch"] == 2
    # Outside a sweep (a notebook), a rerun loop starts again from epoch 1.
    caviar.report({"epoch": 1, "loss": 0.3})
    caviar.report({"epoch": 1, "loss": 0.2})


def test_missing_metric_names_the_fix():
    with pytest.raises(
        session.ReportError,
        match=r"the sweep's metric 'score' is missing from the reported keys \['acc', 'epoch'\]",
    ):
        run(lambda c: caviar.report({"epoch": 1, "acc": 1.0}))


def test_every_metric_of_the_sweep_is_checked_and_numpy_scalars_are_numbers():
    """A second objective misnamed would leave no trial on the front after the whole budget:
    every report must carry each metric. numpy's scalars (np.mean of a float32 array) are
    numbers, recorded as floats; a tensor is not."""
    with pytest.raises(
        session.ReportError, match=r"metric 'params' is missing from the reported keys"
    ):
        run(
            lambda c: caviar.report({"epoch": 1, "score": 1.0, "n_params": 9}),
            metric=("score", "params"),
        )
    (result,) = run(
        lambda c: caviar.report({"epoch": 1, "score": np.float32(0.5), "params": np.int64(9)}),
        metric=("score", "params"),
    )
    assert type(result["score"]) is float and result["score"] == 0.5
    assert type(result["params"]) is float and result["params"] == 9
    with pytest.raises(
        session.ReportError,
        match=r"metric 'score' must be a number, found tensor\(0.5000\) \(Tensor\) at epoch 1; "
        r"report it as a float \(a tensor's .item\(\)\)",
    ):
        run(lambda c: caviar.report({"epoch": 1, "score": torch.tensor(0.5)}))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_metric_ends_the_trial_as_diverged(bad):
    epochs = []

    def fn(config):
        for epoch in range(1, 6):
            epochs.append(epoch)
            caviar.report({"epoch": epoch, "score": bad if epoch == 3 else 1.0})

    results = run(fn)
    assert epochs == [1, 2, 3]
    assert results[-1]["diverged"] is True and "diverged" not in results[0]


def test_outside_a_sweep_report_goes_to_a_default_session():
    caviar.report({"epoch": 1, "loss": 0.3})  # a notebook user can call it directly
    assert session._session().results[-1] == {"epoch": 1, "loss": 0.3}


@pytest.mark.parametrize(
    "error, kind",
    [
        (MemoryError(), "CPU"),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: ..."), "CPU"),
        # torch's own class, raised here because CI has no GPU to exhaust.
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried ..."), "GPU"),
    ],
    ids=["MemoryError", "torch-cpu-allocator", "torch.cuda.OutOfMemoryError"],
)
def test_running_out_of_memory_is_named_as_such(error, kind):
    def train(config):
        raise error

    with pytest.raises(session.OutOfMemoryError, match=f"ran out of {kind} memory") as raised:
        session.run(train, {}, session.Session(metric="acc"))
    assert "lower batch_size" in str(raised.value)


def test_other_errors_pass_through_unchanged():
    def train(config):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        session.run(train, {}, session.Session(metric="acc"))
