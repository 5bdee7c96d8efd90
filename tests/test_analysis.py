"""caviar.analysis, caviar.html_report, `caviar best` / `caviar report` and the notebooks.

Unit tests use small run directories written here with caviar.results (no Ray). Integration
tests run two real sweeps once for the module through the `caviar` command: a coarse-to-fine
sweep with ASHA on digits, and one whose every trial raises.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import re
import shutil
import sys
import tempfile
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import QUICK_SPEC
from matplotlib.figure import Figure
from matplotlib.text import Text

from caviar import analysis, cli, results
from caviar.errors import CaviarError, RunDirError
from caviar.storage import Location
from tests.conftest import caviar_cli, chromium, needs_chromium

REPO = Path(__file__).resolve().parent.parent
# The notebooks that read a run directory; api.ipynb runs its own sweep (tests/test_api.py).
NOTEBOOKS = sorted(p for p in (REPO / "notebooks").glob("*.ipynb") if p.name != "api.ipynb")
PLOT_IDS = [p.__name__ for p in analysis.PLOTS]

# --- small run directories, written without Ray ---------------------------------------------

FAKE_SPEC = {
    "name": "fake",
    "metric": "val_acc",
    "mode": "max",
    "train": {"task": "digits", "function": None, "model": "mlp", "max_epochs": 4, "fixed": {}},
    "space": {
        "lr": {"loguniform": [1e-4, 1e-1]},
        "momentum": {"one_minus_loguniform": [0.5, 0.99]},
        "hidden": {"randint": [16, 64]},
        "batch_size": {"choice": [32, 64]},
        "optimizer": {"value": "adamw"},
    },
    "searcher": {"name": "coarse_to_fine", "rounds": 2, "inner": "random"},
    "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2.0, "brackets": 1},
    "budget": {"num_samples": 16},
    "checkpoint": {"keep": 2},
    "seed": 0,
}


def _score(config: dict) -> float:
    # The learning rate matters most (best near 3e-3), the batch size a little, the rest not.
    return 0.95 - 0.25 * abs(np.log10(config["lr"]) + 2.5) - 0.01 * (config["batch_size"] == 64)


def write_fake_run(
    root: Path,
    *,
    errored: bool = False,
    regions: bool = True,
    trials: int = 16,
    unfinished: str | None = None,
    scheduler: dict | None = None,
    audit: list[dict] | None = None,
    legacy: bool = False,
) -> Path:
    """`trials` trials in 2 rounds: completed, stopped by the scheduler (ASHA unless
    `scheduler` says otherwise) at epochs 1 and 2, one diverged; or, with errored, 3 trials
    that all raised. The trial named `unfinished` had not ended when the tables were written
    (an interrupted sweep). `audit`: the stopping audit's rows; `legacy`: trials.parquet as
    caviar wrote it before other schedulers, with ``stopped_by_asha`` only."""
    rng = np.random.default_rng(0)
    records = []
    n = 3 if errored else trials
    for i in range(n):
        config = {
            "max_epochs": 4,
            "lr": float(10 ** rng.uniform(-4, -1)),
            "momentum": float(1 - 10 ** rng.uniform(-2, np.log10(0.5))),
            "hidden": int(rng.integers(16, 65)),
            "batch_size": int(rng.choice([32, 64])),
            "optimizer": "adamw",
        }
        tid = f"t{i:07d}"
        if errored:
            error = f"Traceback (most recent call last):\n  ...\nRuntimeError: boom {i}\n"
            records.append(results.TrialRecord(tid, config, [], error, round=0))
            continue
        epochs, asha = (4, False) if i % 3 == 0 else (1 + i % 2, True)
        history = [
            {
                "epoch": e,
                "val_acc": _score(config) - 0.02 * (4 - e) + 0.002 * rng.normal(),
                "train_loss": 1.0 / e,
                "epoch_seconds": 0.5,
                "test_acc": _score(config) - 0.02,
            }
            for e in range(1, epochs + 1)
        ]
        if i == 5:  # one diverged trial
            history = history[:1] + [{"epoch": 2, "val_acc": float("nan"), "diverged": True}]
            asha = False
        running = tid == unfinished
        records.append(
            results.TrialRecord(
                tid, config, history, None, 2 * i // n, asha and not running, running
            )
        )
    trials, history = results.build_tables(records, "val_acc", "max", 4)
    if legacy:
        trials = trials.drop(columns="stopped_by_scheduler")
    run_dir = root / ("empty" if errored else "fake")
    run_dir.mkdir(parents=True)
    spec = {**FAKE_SPEC, "scheduler": scheduler or FAKE_SPEC["scheduler"]}
    spec_yaml = yaml.safe_dump(
        {**spec, "searcher": {"name": "random"}} if errored else spec, sort_keys=False
    )
    (run_dir / "spec.yaml").write_text(spec_yaml)
    space = FAKE_SPEC["space"]
    narrowed = {**space, "lr": {"loguniform": [1e-3, 1e-2]}, "batch_size": {"choice": [32]}}
    region_list = [{"round": 0, "space": space}, {"round": 1, "space": narrowed}]
    results.write_results(
        Location.of(run_dir),
        trials,
        history,
        spec_yaml,
        region_list if regions and not errored else None,
        audit=audit,
    )
    return run_dir


def write_fake_checkpoint(run_dir: Path, trial_id: str, payload: dict, epoch: int) -> Path:
    """A Ray-style checkpoint directory for `epoch`, named in the trial's result.json."""
    trial_dir = run_dir / "ray" / trial_id
    name = f"checkpoint_{epoch - 1:06d}"
    (trial_dir / name).mkdir(parents=True)
    (trial_dir / name / "checkpoint.pkl").write_bytes(pickle.dumps(payload))
    with open(trial_dir / "result.json", "a") as f:
        f.write(json.dumps({"epoch": epoch, "checkpoint_dir_name": name}) + "\n")
    return trial_dir / name


def builtin_checkpoint(config: dict, epoch: int) -> dict:
    import torch

    from caviar.train import DEFAULTS, models

    hp = {**DEFAULTS, **config}
    torch.manual_seed(epoch)
    net = models.build("mlp", (8, 8), 10, hp)
    return {
        "epoch": epoch,
        "model": net.state_dict(),
        "arch": {"model": "mlp", "shape": (8, 8), "num_classes": 10, "hp": hp},
    }


@pytest.fixture
def fake_run(tmp_path) -> Path:
    return write_fake_run(tmp_path)


@pytest.fixture
def fake_empty_run(tmp_path) -> Path:
    return write_fake_run(tmp_path, errored=True)


def says_no_data(fig: Figure) -> bool:
    return any("no data" in t.get_text() for t in fig.findobj(Text))


def assert_readers_agree(run_dir: Path) -> None:
    """pandas, pyarrow, DuckDB and Polars read the same rows and columns."""
    import duckdb
    import polars as pl

    for name in ("trials.parquet", "history.parquet", "regions.parquet"):
        path = run_dir / name
        if not path.exists():
            continue
        by_pandas = pd.read_parquet(path)
        by_arrow = pq.read_table(path)
        by_duckdb = duckdb.sql(f"select * from read_parquet('{path}')").df()
        by_polars = pl.read_parquet(path)
        n, cols = len(by_pandas), list(by_pandas.columns)
        assert by_arrow.num_rows == len(by_duckdb) == by_polars.height == n, name
        assert by_arrow.column_names == list(by_duckdb.columns) == by_polars.columns == cols, name
        assert duckdb.sql(f"select count(*) from read_parquet('{path}')").fetchall() == [(n,)]
        if name == "trials.parquet" and n:
            assert sorted(by_polars["trial_id"].to_list()) == sorted(by_pandas["trial_id"])
            assert sorted(by_duckdb["status"]) == sorted(by_pandas["status"])


# --- unit tests ------------------------------------------------------------------------------


def test_load_reads_tables_spec_and_domains(fake_run):
    run = analysis.load(fake_run)
    assert (run.metric, run.mode, run.max_epochs) == ("val_acc", "max", 4)
    assert run.run_dir == str(fake_run)
    assert len(run.trials) == 16 and len(run.history) == run.trials["epochs"].sum()
    assert run.searched == ["lr", "momentum", "hidden", "batch_size"]  # fixed ones left out
    assert sorted(run.regions["round"].unique()) == [0, 1]
    assert run.space["lr"].scale == "log" and run.space["momentum"].scale == "one_minus_log"
    # A URI reads the same.
    assert len(analysis.load(f"file://{fake_run}").trials) == 16
    assert_readers_agree(fake_run)


def test_load_without_regions_gives_an_empty_frame(tmp_path):
    run = analysis.load(write_fake_run(tmp_path, regions=False))
    assert run.regions.empty and list(run.regions.columns)[:3] == ["round", "param", "kind"]


def _foreign_parquet(run_dir: Path) -> None:
    (run_dir / "spec.yaml").write_text(yaml.safe_dump(FAKE_SPEC))
    pd.DataFrame({"trial_id": ["a"], "status": ["completed"]}).to_parquet(
        run_dir / "trials.parquet"
    )


def _newer_schema(run_dir: Path) -> None:
    (run_dir / "spec.yaml").write_text(yaml.safe_dump(FAKE_SPEC))
    import pyarrow as pa

    table = pa.table({"trial_id": ["a"], "status": ["completed"]})
    meta = {b"caviar.schema_version": b"99", b"caviar.spec": yaml.safe_dump(FAKE_SPEC).encode()}
    pq.write_table(table.replace_schema_metadata(meta), run_dir / "trials.parquet")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, "no such directory; pass the run directory that `caviar run` printed"),
        (lambda d: d.mkdir(), "not a caviar run directory (no trials.parquet or spec.yaml)"),
        (
            lambda d: (d.mkdir(), (d / "spec.yaml").write_text("name: x\n")),
            "no results yet (no trials.parquet): the sweep is still running or was interrupted",
        ),
        (
            lambda d: (d.mkdir(), _foreign_parquet(d)),
            "trials.parquet: not written by caviar (its Parquet metadata has no "
            "caviar.schema_version)",
        ),
        (
            lambda d: (d.mkdir(), _newer_schema(d)),
            "trials.parquet: written by a newer caviar (schema version 99; this caviar reads "
            "up to version 1); upgrade caviar to read it",
        ),
        (
            lambda d: (d.mkdir(), (d / "trials.parquet").write_text("trial_id,status\n")),
            "trials.parquet: not a readable Parquet file",
        ),
    ],
    ids=["missing", "empty-dir", "spec-only", "foreign-parquet", "newer-schema", "not-parquet"],
)
def test_load_refuses_what_it_cannot_read(tmp_path, make, message):
    run_dir = tmp_path / "run"
    if make:
        make(run_dir)
    with pytest.raises(RunDirError, match=re.escape(message)):
        analysis.load(run_dir)


def test_leaderboard_and_outcomes(fake_run):
    run = analysis.load(fake_run)
    board = analysis.leaderboard(run)
    expected = results.leaderboard(run.trials, "val_acc", "max")
    assert list(board["trial_id"]) == list(expected["trial_id"])
    assert board["best_val_acc"].is_monotonic_decreasing
    assert len(analysis.leaderboard(run, top=3)) == 3
    assert len(analysis.leaderboard(run, top=np.int64(3))) == 3
    with pytest.raises(CaviarError, match=r"top: expected a whole number >= 0 .*, found -1"):
        analysis.leaderboard(run, top=-1)  # pandas' head(-1): all but the last, silently
    counts = analysis.outcomes(run).value_counts().to_dict()
    assert counts == {"stopped early by the scheduler": 9, "completed": 6, "diverged": 1}
    assert analysis.status_counts(run).to_dict() == {
        "completed": 6,
        "early_stopped": 9,
        "diverged": 1,
        "error": 0,
        "unfinished": 0,
    }


def test_asha_rungs_and_what_stopping_saved(fake_run):
    run = analysis.load(fake_run)
    assert analysis.scheduler_rungs(run) == [1, 2, 4]
    s = analysis.stopping_summary(run)
    assert s.rungs.to_dict("list") == {"epoch": [1, 2, 4], "trials": [16, 11, 6]}
    assert s.trials == 16 and s.epochs_trained == run.trials["epochs"].sum()
    assert s.epochs_full == 16 * 4
    stopped = run.trials[run.trials["stopped_by_scheduler"]]
    assert s.epochs_saved_by_scheduler == (4 - stopped["epochs"]).sum()
    assert s.seconds_saved_by_scheduler == pytest.approx(0.5 * s.epochs_saved_by_scheduler)
    # The names from when ASHA was the only scheduler still work.
    assert analysis.asha_rungs(run) == [1, 2, 4]
    assert analysis.AshaSummary is analysis.StoppingSummary
    old = analysis.asha_summary(run)
    assert (old.epochs_saved_by_asha, old.seconds_saved_by_asha) == (
        s.epochs_saved_by_scheduler,
        s.seconds_saved_by_scheduler,
    )


@pytest.mark.parametrize(
    ("scheduler", "rungs", "shown"),
    [
        ({"name": "asha"}, [1, 3, 9], "asha (grace_period 1, reduction_factor 3.0, brackets 1)"),
        # No section: the default scheduler, caviar's (min_epochs 1, reduction_factor 3).
        (
            None,
            [1, 3],
            "caviar (min_epochs 1, reduction_factor 3.0, trust 0.5, min_pairs 6, noise_z 0.5, hopeless 0.01, window 9)",
        ),
    ],
    ids=["no-reduction-factor", "no-scheduler"],
)
def test_asha_rungs_take_the_specs_defaults_for_what_spec_yaml_leaves_out(
    tmp_path, scheduler, rungs, shown
):
    # The defaults of the scheduler's options (caviar.schedulers); the sweep placed its rungs so.
    spec = {k: v for k, v in FAKE_SPEC.items() if k != "scheduler"}
    spec["train"] = {**FAKE_SPEC["train"], "max_epochs": 9}
    if scheduler is not None:
        spec["scheduler"] = scheduler
    run_dir = write_fake_run(tmp_path)
    (run_dir / "spec.yaml").write_text(yaml.safe_dump(spec))
    run = analysis.load(run_dir)
    assert analysis.asha_rungs(run) == analysis.scheduler_rungs(run) == rungs
    assert analysis.asha_summary(run).rungs["epoch"].tolist() == [*[r for r in rungs if r < 9], 9]
    from caviar.html_report import render_report

    assert shown in render_report(run)


def test_a_completed_one_shot_trial_saved_nothing(tmp_path):
    # A one-shot objective reports once and completes: it did not stop early.
    records = [results.TrialRecord("a", {"x": 1.0}, [{"epoch": 1, "s": 1.0, "caviar_final": True}])]
    trials, history = results.build_tables(records, "s", "max", 5)
    run_dir = tmp_path / "oneshot"
    spec = {"metric": "s", "mode": "max", "train": {"max_epochs": 5}, "space": {}}
    run_dir.mkdir()
    (run_dir / "spec.yaml").write_text(yaml.safe_dump(spec))
    results.write_results(Location.of(run_dir), trials, history, yaml.safe_dump(spec))
    s = analysis.asha_summary(analysis.load(run_dir))
    assert (s.epochs_trained, s.epochs_full, s.epochs_saved) == (1, 1, 0)


CAVIAR_SCHEDULER = {
    "name": "caviar",
    "min_epochs": 1,
    "reduction_factor": 2.0,
    "trust": 0.8,
    "min_pairs": 8,
    "noise_z": 1.0,
}
WARNING = "4 trials stopped at a rung whose agreement is now 0.60 (< trust 0.8)"


def audit_rows(warned: bool = True) -> list[dict]:
    """caviar.stopping.Stopping.audit's rows for the fake run under CAVIAR_SCHEDULER (rungs 1
    and 2): rung 1 trusted; rung 2 stopped 4 trials, and its agreement fell below trust."""
    return [
        {
            "rung": 1,
            "reached": 16,
            "stopped": 5,
            "stopped_hopeless": 2,
            "spared_by_noise": 1,
            "agreement": 0.9,
            "ranked_by": "best",
            "pairs": 11,
            "reference": 2.0,
            "trusted": True,
            "noise": 0.002,
            "warning": None,
        },
        {
            "rung": 2,
            "reached": 11,
            "stopped": 4,
            "spared_by_noise": 0,
            "agreement": 0.6,
            "ranked_by": "forecast",
            "pairs": 8,
            "reference": 4.0,
            "trusted": False,
            "noise": 0.002,
            "warning": WARNING if warned else None,
        },
    ]


def untrusted_rows() -> list[dict]:
    """An audit where no rung was ever trusted (too few trials to measure agreement)."""
    return [
        {
            "rung": r,
            "reached": n,
            "stopped": 0,
            "spared_by_noise": 0,
            "agreement": None,
            "ranked_by": None,
            "pairs": None,
            "reference": None,
            "trusted": False,
            "noise": 0.0,
            "warning": None,
        }
        for r, n in ((1, 16), (2, 16))
    ]


@pytest.fixture
def caviar_run(tmp_path) -> Path:
    return write_fake_run(tmp_path / "caviar", scheduler=CAVIAR_SCHEDULER, audit=audit_rows())


def test_rungs_and_stops_of_caviars_scheduler(caviar_run):
    run = analysis.load(caviar_run)
    assert (
        run.scheduler["name"] == "caviar" and analysis.scheduler_label(run) == "caviar's scheduler"
    )
    assert analysis.scheduler_rungs(run) == [1, 2]  # below max_epochs, unlike ASHA's
    assert analysis.stopping_summary(run).rungs.to_dict("list") == {
        "epoch": [1, 2, 4],
        "trials": [16, 11, 6],
    }
    counts = analysis.outcomes(run).value_counts().to_dict()
    assert counts == {analysis.STOPPED_BY_SCHEDULER: 9, "completed": 6, "diverged": 1}
    curves = analysis.plot_learning_curves(run).axes[0]
    assert curves.get_xlabel() == "epoch (dotted: rungs of caviar's scheduler)"
    (left, _) = analysis.plot_rung_survival(run).axes
    assert left.get_title() == "caviar's scheduler: trials reaching each rung"
    # Rung 2 is not trusted (any more): its bar is pale.
    assert [round(b.get_alpha(), 2) for b in left.patches] == [0.85, 0.3, 0.85]
    assert "pale: not trusted to stop trials" in left.get_xlabel()


def test_an_old_asha_run_with_only_stopped_by_asha(tmp_path):
    run = analysis.load(write_fake_run(tmp_path, legacy=True))
    assert "stopped_by_scheduler" not in run.trials and run.trials["stopped_by_asha"].any()
    assert analysis.scheduler_rungs(run) == [1, 2, 4]
    counts = analysis.outcomes(run).value_counts().to_dict()
    assert counts == {"stopped early by the scheduler": 9, "completed": 6, "diverged": 1}
    s = analysis.stopping_summary(run)
    assert (
        s.epochs_saved_by_scheduler
        == (4 - run.trials["epochs"][run.trials["stopped_by_asha"]]).sum()
    )
    assert (
        analysis.plot_learning_curves(run).axes[0].get_xlabel() == "epoch (dotted: rungs of ASHA)"
    )
    (left, _) = analysis.plot_rung_survival(run).axes
    assert left.get_title() == "ASHA: trials reaching each rung"
    assert analysis.audit(run) is None and analysis.audit_text(run) == ""


def test_a_scheduler_without_rungs_says_so(tmp_path):
    run = analysis.load(write_fake_run(tmp_path, scheduler={"name": "median"}))
    assert analysis.scheduler_rungs(run) == []
    assert analysis.plot_learning_curves(run).axes[0].get_xlabel() == "epoch"
    texts = [t.get_text() for t in analysis.plot_rung_survival(run).findobj(Text)]
    assert "the median stopping rule has no rungs (scheduler: median)" in texts


def test_audit_reads_back(caviar_run, fake_run):
    audit = analysis.audit(analysis.load(caviar_run))
    assert list(audit.columns) == [
        "rung",
        "reached",
        "stopped",
        "stopped_hopeless",
        "spared_by_noise",
        "agreement",
        "ranked_by",
        "pairs",
        "reference",
        "trusted",
        "noise",
        "warning",
    ]
    assert audit["rung"].tolist() == [1, 2] and audit["stopped"].tolist() == [5, 4]
    assert audit["agreement"].tolist() == [0.9, 0.6] and audit["trusted"].tolist() == [True, False]
    assert audit["warning"].tolist() == [None, WARNING]
    assert analysis.audit(analysis.load(fake_run)) is None  # ASHA writes none


def test_audit_without_measured_agreement_reads_back_typed(tmp_path):
    run = analysis.load(
        write_fake_run(tmp_path, scheduler=CAVIAR_SCHEDULER, audit=untrusted_rows())
    )
    audit = analysis.audit(run)
    assert audit["agreement"].dtype == "float64" and audit["agreement"].isna().all()
    assert audit["pairs"].isna().all() and not audit["trusted"].any()
    assert audit["warning"].tolist() == [None, None]


def test_audit_is_read_with_the_schema_check(caviar_run):
    pd.DataFrame(audit_rows()).to_parquet(caviar_run / results.AUDIT_FILE)
    with pytest.raises(RunDirError, match=re.escape("audit.parquet: not written by caviar")):
        analysis.audit(analysis.load(caviar_run))


def test_audit_text(caviar_run):
    text = analysis.audit_text(analysis.load(caviar_run))
    assert text.splitlines() == [
        "rung  reached  stopped  hopeless  agreement  ranked by  trusted",
        "   1       16        5         2       0.90       best      yes",
        "   2       11        4         -       0.60   forecast       no",
        f"warning: rung 2: {WARNING}",
        "caviar's scheduler stopped 9 of 16 trials early, at rungs whose rank agreement was >= 0.8",
    ]


def test_audit_text_when_no_rung_was_trusted(tmp_path):
    run = analysis.load(
        write_fake_run(tmp_path, scheduler=CAVIAR_SCHEDULER, audit=untrusted_rows())
    )
    lines = analysis.audit_text(run).splitlines()
    assert lines[1:3] == [
        "   1       16        0         -          -          -       no",
        "   2       16        0         -          -          -       no",
    ]
    assert lines[-1] == (
        "caviar's scheduler stopped none of 16 trials early: no rung's rank agreement reached "
        "0.8, so every rung stayed a grace period"
    )
    assert not [line for line in lines if line.startswith("warning")]


def test_report_shows_the_audit_when_there_is_one(caviar_run, fake_run):
    from caviar.html_report import render_report

    page = assert_self_contained(
        render_report(analysis.load(caviar_run)), images=len(analysis.PLOTS)
    )
    assert {"audit"} <= set(page.ids("table")) and "audit-warnings" in page.ids("ul")
    text = " ".join(page.text)
    assert "Stopping audit" in text and f"rung 2: {WARNING}" in text
    assert "caviar's scheduler stopped 9 of 16 trials early" in text
    saved = analysis.stopping_summary(analysis.load(caviar_run)).epochs_saved_by_scheduler
    assert f"({saved} epochs by caviar's scheduler)" in text
    # No audit (ASHA): no section.
    page = Page(render_report(analysis.load(fake_run)))
    assert "audit" not in page.ids("table") and "Stopping audit" not in " ".join(page.text)
    # An audit without warnings: the table, no warning list.
    clean = write_fake_run(
        caviar_run.parent / "clean", scheduler=CAVIAR_SCHEDULER, audit=audit_rows(warned=False)
    )
    page = Page(render_report(analysis.load(clean)))
    assert "audit" in page.ids("table") and "audit-warnings" not in page.ids("ul")


@pytest.mark.parametrize("plot", analysis.PLOTS, ids=PLOT_IDS)
def test_every_plot_draws_the_fake_run(fake_run, plot, tmp_path):
    fig = plot(analysis.load(fake_run))
    assert isinstance(fig, Figure) and not says_no_data(fig)
    fig.savefig(tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("plot", analysis.PLOTS, ids=PLOT_IDS)
def test_every_plot_says_no_data_when_every_trial_failed(fake_empty_run, plot):
    fig = plot(analysis.load(fake_empty_run))
    assert isinstance(fig, Figure) and says_no_data(fig)


def test_plots_say_why_there_is_nothing_to_draw(tmp_path):
    run = analysis.load(write_fake_run(tmp_path, regions=False))
    texts = [t.get_text() for t in analysis.plot_regions(run).findobj(Text)]
    assert any("this run has no regions (searcher: coarse_to_fine)" in t for t in texts)
    texts = [
        t.get_text()
        for t in analysis.plot_lr_batch_interaction(run, x="lr", y="dropout").findobj(Text)
    ]
    assert any("needs lr and dropout both searched" in t for t in texts)


def test_an_unfinished_trial_ranks_in_the_plots_as_in_the_leaderboard(tmp_path):
    # An interrupted sweep: its best trial had not ended. `caviar results` / `caviar best`
    # rank it (objective.RANKED), so the plots must show it as the best too.
    top = analysis.best(analysis.load(write_fake_run(tmp_path / "a"))).trial_id
    run = analysis.load(write_fake_run(tmp_path / "b", unfinished=top))
    row = run.trials.set_index("trial_id").loc[top]
    assert row["status"] == "unfinished" and analysis.best(run).trial_id == top
    best = row["best_val_acc"]

    lr_axes = analysis.plot_param_effects(run).axes[0]
    (star,) = [c for c in lr_axes.collections if list(c.get_sizes()) == [140]]
    assert star.get_offsets().tolist() == [[row["param_lr"], best]]

    by_round = analysis.plot_metric_by_round(run).axes[0]
    (line,) = [ln for ln in by_round.get_lines() if ln.get_label() == "round's max"]
    assert line.get_ydata()[list(line.get_xdata()).index(row["round"])] == best

    parallel = analysis.plot_parallel_coordinates(run).axes[0]
    assert parallel.get_title() == f"parallel coordinates: {len(analysis.leaderboard(run))} trials"
    assert len(analysis.leaderboard(run)) == len(parallel.collections[0].get_segments())


def test_importance_ranks_the_parameter_that_matters_first(tmp_path):
    run = analysis.load(write_fake_run(tmp_path, trials=60))
    imp = analysis.importance(run)
    assert isinstance(imp, pd.Series) and imp.index[0] == "lr"
    assert set(imp.index) <= set(run.searched) and imp.is_monotonic_decreasing
    assert analysis.importance(run).equals(imp)  # seeded: the same every time


def test_importance_is_empty_without_enough_trials(fake_empty_run):
    assert analysis.importance(analysis.load(fake_empty_run)).empty


def test_best_and_export_round_trip(fake_run, tmp_path):
    import torch

    run = analysis.load(fake_run)
    b = analysis.best(run)
    top = analysis.leaderboard(run, top=1).iloc[0]
    assert b.trial_id == top["trial_id"] and b.value == top["best_val_acc"]
    assert b.config["lr"] == top["param_lr"] and b.config["optimizer"] == "adamw"
    assert type(b.config["hidden"]) is int  # plain Python values, not numpy
    assert b.checkpoint is None  # no checkpoints written yet
    # Ray kept epochs 3 and 4; the metric was best at epoch 4.
    for epoch in (3, 4):
        write_fake_checkpoint(fake_run, b.trial_id, builtin_checkpoint(b.config, epoch), epoch)
    b = analysis.best(run)
    assert b.best_epoch == 4 and b.checkpoint_epoch == 4
    assert b.checkpoint == str(fake_run / "ray" / b.trial_id / "checkpoint_000003")
    path = analysis.export_best(run, tmp_path / "models")
    assert path == tmp_path / "models" / f"fake-{b.trial_id}.pt"
    payload = torch.load(path, weights_only=True)
    assert payload["config"] == b.config and payload["trial_id"] == b.trial_id
    assert payload["epoch"] == 4 and payload["metric"] == "val_acc"

    rng_before = torch.get_rng_state()
    model = analysis.load_model(path)
    assert torch.equal(torch.get_rng_state(), rng_before)  # loading leaves the RNG alone
    assert not model.training
    original = builtin_checkpoint(b.config, 4)
    from caviar.train.models import build

    reference = build("mlp", (8, 8), 10, original["arch"]["hp"])
    reference.load_state_dict(original["model"])
    x = torch.randn(5, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), reference.eval()(x))


def trained_checkpoint() -> tuple:
    """A real checkpoint of the built-in train function (one epoch on digits, no Ray), the
    network it holds (in eval mode), and the data it trained on."""
    from caviar.train.data import load as load_data
    from caviar.train.models import build
    from caviar.train.population import Population

    data = load_data("digits")
    population = Population(data, "mlp")
    population.add("t", {"max_epochs": 2})
    ((_, _, ckpt, _),) = population.train_epoch()
    arch = ckpt["arch"]
    net = build(arch["model"], tuple(arch["shape"]), arch["num_classes"], arch["hp"])
    net.load_state_dict(ckpt["model"])
    return ckpt, net.eval(), data


def test_exported_model_takes_raw_inputs(fake_run, tmp_path):
    import torch
    from sklearn.datasets import load_digits

    ckpt, net, data = trained_checkpoint()
    assert {"input_mean", "input_std"} <= set(ckpt["arch"])
    run = analysis.load(fake_run)
    write_fake_checkpoint(fake_run, analysis.best(run).trial_id, ckpt, 4)
    path = analysis.export_best(run, tmp_path)
    payload = torch.load(path, weights_only=True)
    assert payload["format_version"] == 2 and payload["input_mean"].shape == (64,)
    assert torch.equal(payload["input_std"], torch.from_numpy(data.std))

    # The network saw inputs standardized with training statistics; a user has raw ones.
    raw = load_digits().data[:300].reshape(-1, 8, 8)  # 0..16 pixel values
    standardized = ((raw.reshape(len(raw), -1) - data.mean) / data.std).astype(np.float32)
    model = analysis.load_model(path)
    with torch.no_grad():
        expected = net(torch.as_tensor(standardized))
        got = model(torch.as_tensor(raw, dtype=torch.float32))
        unstandardized = net(torch.as_tensor(raw, dtype=torch.float32)).argmax(1)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert torch.allclose(got, expected, atol=1e-4)
    # Without the standardization the same network predicts other classes: the test can tell.
    assert (unstandardized != expected.argmax(1)).any()


def test_load_model_reads_version_1_files(fake_run, tmp_path):
    import torch

    from caviar.analysis.standardize import Standardize

    ckpt, net, data = trained_checkpoint()
    run = analysis.load(fake_run)
    write_fake_checkpoint(fake_run, analysis.best(run).trial_id, ckpt, 4)
    payload = torch.load(analysis.export_best(run, tmp_path), weights_only=True)
    # A version-1 file has no input statistics: its model takes standardized inputs.
    v1 = {k: v for k, v in payload.items() if not k.startswith("input_")}
    torch.save({**v1, "format_version": 1}, tmp_path / "v1.pt")
    model = analysis.load_model(tmp_path / "v1.pt")
    assert not any(isinstance(m, Standardize) for m in model.modules())
    x = torch.as_tensor(data.x_test)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))


def test_best_prefers_the_best_epoch_checkpoint_while_ray_keeps_it(fake_run):
    run = analysis.load(fake_run)
    b = analysis.best(run)
    for epoch in (4, 5):  # a later epoch, as if the metric got worse after the best one
        write_fake_checkpoint(fake_run, b.trial_id, {"epoch": epoch}, epoch)
    assert analysis.best(run).checkpoint_epoch == 4
    shutil.rmtree(fake_run / "ray" / b.trial_id / "checkpoint_000003")
    b = analysis.best(run)
    assert (b.best_epoch, b.checkpoint_epoch) == (4, 5)  # gone: the latest instead


def test_export_refuses_a_checkpoint_without_the_architecture(fake_run, tmp_path):
    run = analysis.load(fake_run)
    trial_id = analysis.best(run).trial_id
    write_fake_checkpoint(fake_run, trial_id, {"epoch": 4, "weights": [1, 2]}, 4)
    with pytest.raises(
        RunDirError,
        match=re.escape(
            "checkpoint.pkl: no 'model' or 'arch' in this checkpoint (found ['epoch', "
            "'weights']); export rebuilds the built-in train function's networks"
        ),
    ):
        analysis.export_best(run, tmp_path)


def test_export_to_a_path_that_is_a_file_says_so(fake_run, tmp_path):
    run = analysis.load(fake_run)
    b = analysis.best(run)
    write_fake_checkpoint(fake_run, b.trial_id, builtin_checkpoint(b.config, 4), 4)
    (tmp_path / "taken").write_text("")
    with pytest.raises(RunDirError, match=r"--export: cannot write '.*/taken/fake-t\d+\.pt' \("):
        analysis.export_best(run, tmp_path / "taken")


def test_export_says_when_there_is_no_checkpoint(fake_run, tmp_path):
    run = analysis.load(fake_run)
    with pytest.raises(RunDirError, match=r"left no checkpoint under ray/t\d+/; a train function"):
        analysis.export_best(run, tmp_path)


def test_best_of_a_sweep_where_every_trial_failed(fake_empty_run):
    run = analysis.load(fake_empty_run)
    assert analysis.leaderboard(run).empty
    with pytest.raises(
        RunDirError,
        match=re.escape(
            "no best trial: no trial finished with a val_acc value (3 error); the first error: "
            "RuntimeError: boom 0; every traceback is in `error` of trials.parquet"
        ),
    ):
        analysis.best(run)


def test_load_model_refuses_other_files(tmp_path):
    import torch

    with pytest.raises(analysis.ModelFileError, match="no such file; pass the path"):
        analysis.load_model(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(analysis.ModelFileError, match="not a model file written by caviar"):
        analysis.load_model(tmp_path / "text.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(analysis.ModelFileError, match=re.escape("no format 'caviar.model'")):
        analysis.load_model(tmp_path / "other.pt")


class Page(HTMLParser):
    """Every start tag with its attributes, and the text."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def ids(self, tag: str) -> list[str]:
        return [a.get("id") for t, a in self.tags if t == tag]

    def images(self) -> list[str]:
        return [a["src"] for t, a in self.tags if t == "img"]


def assert_self_contained(page_text: str, images: int) -> Page:
    page = Page(page_text)
    assert {"leaderboard", "status-counts"} <= set(page.ids("table"))
    srcs = page.images()
    assert len(srcs) == images
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"
    assert not {t for t, _ in page.tags} & {"script", "link", "iframe", "object", "embed"}
    for _, attrs in page.tags:
        for value in attrs.values():
            assert not re.match(r"(https?:|//|file:)", value or ""), value
    without_images = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page_text)
    assert "http" not in without_images and "url(" not in without_images
    return page


def test_report_is_one_self_contained_page(fake_run, fake_empty_run, tmp_path):
    from caviar.html_report import write_report

    out = write_report(fake_run, tmp_path / "r.html")
    assert out == str(tmp_path / "r.html")
    page = assert_self_contained(Path(out).read_text(), images=len(analysis.PLOTS))
    text = " ".join(page.text)
    assert "Trials by status" in text and analysis.best(analysis.load(fake_run)).trial_id in text
    # Default location: inside a local run directory.
    assert write_report(fake_run) == str(fake_run / "report.html")
    # No regions: the two coarse-to-fine plots are left out, and the page says why.
    page = assert_self_contained(
        Path(write_report(fake_empty_run, tmp_path / "e.html")).read_text(),
        images=len(analysis.PLOTS) - 2,
    )
    text = " ".join(page.text)
    assert "no trial finished with a val_acc value" in text and "RuntimeError: boom 0" in text
    assert "No coarse-to-fine regions" in text


def test_cli_best_and_report(fake_run, tmp_path, capsys):
    b = analysis.best(analysis.load(fake_run))
    write_fake_checkpoint(fake_run, b.trial_id, builtin_checkpoint(b.config, 4), 4)
    assert cli.main(["best", str(fake_run), "--export", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "m" / f"fake-{b.trial_id}.pt"
    assert f"best trial: {b.trial_id} (completed, round" in out
    assert f"val_acc (max): {b.value:.6g} at epoch 4" in out
    assert f"  lr: {b.config['lr']}" in out and "test_acc: " in out
    assert f"exported: {path}" in out
    assert f"  from caviar.analysis import load_model\n  model = load_model('{path}')" in out
    assert cli.main(["report", str(fake_run), "--out", str(tmp_path / "r.html")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "r.html")


def test_cli_errors_are_one_line_and_exit_2(tmp_path, fake_empty_run, capsys):
    assert cli.main(["best", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"caviar: error: {tmp_path / 'nope'}: no such directory; pass the run directory that "
        "`caviar run` printed\n"
    )
    assert cli.main(["results", str(fake_empty_run)]) == 0  # says so, not pandas' repr
    out = capsys.readouterr().out
    assert "no trial to rank: none has reported val_acc" in out and "Empty DataFrame" not in out
    assert cli.main(["best", str(fake_empty_run)]) == 2
    assert "no best trial" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "report.html"
    assert cli.main(["report", str(fake_empty_run), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith(f"caviar: error: --out: cannot write '{out}' (")
    with pytest.raises(SystemExit) as exit:  # argparse's own: usage, then the problem
        cli.main(["results", str(fake_empty_run), "--top", "-1"])
    assert exit.value.code == 2
    assert "argument --top: expected a whole number >= 0, found '-1'" in capsys.readouterr().err


def test_cli_results_top(fake_run, capsys):
    assert cli.main(["results", str(fake_run), "--json", "--top", "2"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert cli.main(["results", str(fake_run), "--json", "--top", "0"]) == 0
    ranked = results.leaderboard(analysis.load(fake_run).trials, "val_acc", "max")
    assert len(json.loads(capsys.readouterr().out)) == len(ranked) > 2


# --- integration: real sweeps ----------------------------------------------------------------


def _caviar(*args: str, cwd: Path, env: dict) -> str:
    out = caviar_cli(*args, cwd=cwd, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def _sweep(root: Path, spec: dict, name: str) -> Path:
    """Run a sweep through the command line on a private Ray (as `private_ray_tmp` sets up;
    that fixture is per test, and these sweeps run once per module)."""
    ray_tmp = tempfile.mkdtemp(prefix="caviar-ray-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": ray_tmp}
    (root / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    storage = root / "runs"
    try:
        _caviar("run", f"{name}.yaml", "--storage", str(storage), "--name", name, cwd=root, env=env)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return storage / name


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    """Coarse-to-fine (2 rounds, TPE inside) with ASHA: 8 trials of an MLP on digits."""
    spec = {
        **QUICK_SPEC,
        "name": "c2f",
        "train": {
            "task": "digits",
            "model": "mlp",
            "max_epochs": 3,
            "fixed": {"optimizer": "adamw"},
        },
        "searcher": {"name": "coarse_to_fine", "rounds": 2, "inner": "tpe", "top_fraction": 0.5},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "budget": {"num_samples": 8, "max_concurrent": 2},
    }
    return _sweep(tmp_path_factory.mktemp("real"), spec, "real")


@pytest.fixture(scope="module")
def flat_run(real_run, tmp_path_factory) -> Path:
    """The real run without regions.parquet, as a random or TPE sweep leaves it."""
    copy = tmp_path_factory.mktemp("flat") / "flat"
    shutil.copytree(real_run, copy, ignore=shutil.ignore_patterns("regions.parquet", "ray"))
    return copy


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory) -> Path:
    """Every trial of a user's function raises."""
    root = tmp_path_factory.mktemp("failed")
    (root / "objective.py").write_text(
        textwrap.dedent("""
        def train(config):
            raise RuntimeError(f"boom: x={config['x']:.3f}")
    """)
    )
    spec = {
        **QUICK_SPEC,
        "name": "failed",
        "metric": "score",
        "train": {"function": "objective:train", "max_epochs": 2},
        "space": {"x": {"uniform": [0, 1]}},
        "scheduler": {"name": "fifo"},
        "budget": {"num_samples": 2, "max_concurrent": 1},
    }
    return _sweep(root, spec, "failed")


@pytest.mark.integration
def test_real_run_tables(real_run):
    run = analysis.load(real_run)
    assert len(run.trials) == 8 and set(run.trials["round"]) == {0, 1}
    assert run.searched == ["lr", "hidden", "batch_size"]
    assert not run.regions.empty and "test_acc" in run.trials
    assert_readers_agree(real_run)


@pytest.mark.integration
@pytest.mark.parametrize("plot", analysis.PLOTS, ids=PLOT_IDS)
def test_every_plot_draws_the_real_run(real_run, plot, tmp_path):
    fig = plot(analysis.load(real_run))
    assert isinstance(fig, Figure) and not says_no_data(fig)
    fig.savefig(tmp_path / "plot.png")


@pytest.mark.integration
@pytest.mark.parametrize("plot", analysis.PLOTS, ids=PLOT_IDS)
def test_every_plot_says_no_data_for_the_failed_run(failed_run, plot):
    fig = plot(analysis.load(failed_run))
    assert isinstance(fig, Figure) and says_no_data(fig)


@pytest.mark.integration
def test_failed_run_has_no_best(failed_run):
    run = analysis.load(failed_run)
    assert len(run.trials) == 2 and set(run.trials["status"]) == {"error"}
    assert analysis.leaderboard(run).empty and analysis.importance(run).empty
    assert_readers_agree(failed_run)
    with pytest.raises(
        RunDirError,
        match=r"no best trial: no trial finished with a score value \(2 error\); the first "
        r"error: RuntimeError: boom: x=0\.\d+; every traceback is in `error` of trials.parquet",
    ):
        analysis.best(run)


@pytest.mark.integration
def test_exported_model_reproduces_the_trials_test_accuracy(real_run, tmp_path, capsys):
    import torch

    from caviar.train.data import load as load_data

    run = analysis.load(real_run)
    b = analysis.best(run)
    assert b.test_acc is not None and b.checkpoint is not None
    assert cli.main(["best", str(real_run), "--export", str(tmp_path)]) == 0
    path = tmp_path / f"real-{b.trial_id}.pt"
    assert f"exported: {path}" in capsys.readouterr().out
    model = analysis.load_model(path)
    data = load_data("digits", run.spec["seed"])

    def accuracy(x, y):
        raw = x * data.std + data.mean  # the exported model standardizes raw inputs itself
        with torch.no_grad():
            return (
                (model(torch.as_tensor(raw)).argmax(1) == torch.as_tensor(y)).float().mean().item()
            )

    h = run.history.set_index(["trial_id", "epoch"])
    # Its validation accuracy at the exported epoch is what the trial reported then...
    val_then = h.loc[(b.trial_id, b.checkpoint_epoch), "val_acc"]
    assert accuracy(data.x_val, data.y_val) == pytest.approx(val_then, abs=1e-6)
    # ...and the best epoch's weights give the test accuracy the trial reported.
    if b.checkpoint_epoch == b.best_epoch:
        assert accuracy(data.x_test, data.y_test) == pytest.approx(b.test_acc, abs=1e-6)


@pytest.mark.integration
def test_reports_of_real_runs(real_run, flat_run, failed_run, tmp_path):
    from caviar.html_report import write_report

    n = len(analysis.PLOTS)
    for run_dir, images in ((real_run, n), (flat_run, n - 2), (failed_run, n - 2)):
        out = write_report(run_dir, tmp_path / f"{run_dir.name}.html")
        assert_self_contained(Path(out).read_text(), images)


@pytest.mark.integration
@needs_chromium
def test_report_renders_in_a_headless_browser(real_run, tmp_path):
    from caviar.html_report import write_report

    out = Path(write_report(real_run, tmp_path / "report.html"))
    profile = tmp_path / "profile"
    dom = chromium(["--dump-dom", out.as_uri()], profile).stdout
    page = Page(dom)
    assert "leaderboard" in page.ids("table")
    assert len(page.images()) == len(analysis.PLOTS)
    assert all(src.startswith("data:image/png;base64,") for src in page.images())
    shot = tmp_path / "shot.png"
    chromium([f"--screenshot={shot}", "--window-size=1200,2000", out.as_uri()], profile)
    assert shot.exists() and shot.read_bytes()[:4] == b"\x89PNG"


@pytest.fixture
def python3_kernel(tmp_path, monkeypatch):
    """A "python3" kernelspec for this interpreter, ahead of any other on JUPYTER_PATH."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "Python 3", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))


def test_notebooks_are_stored_without_outputs():
    import nbformat

    assert {p.name for p in NOTEBOOKS} == {
        "overview.ipynb",
        "hyperparameters.ipynb",
        "coarse_to_fine.ipynb",
    }
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), path.name
        assert 'os.environ.get("CAVIAR_RUN_DIR")' in code[0].source
        assert all(c.outputs == [] and c.execution_count is None for c in code), path.name
        source = "\n".join(c.source for c in code)
        assert "read_parquet" not in source and "from caviar import analysis" in source


@pytest.mark.integration
@pytest.mark.parametrize(
    ("notebook", "which"),
    [
        ("overview", "real_run"),
        ("hyperparameters", "real_run"),
        ("coarse_to_fine", "real_run"),
        ("coarse_to_fine", "flat_run"),
        ("overview", "failed_run"),
        ("overview", "caviar_run"),  # with a stopping audit
        ("hyperparameters", "failed_run"),
        ("coarse_to_fine", "failed_run"),
    ],
)
def test_notebook_runs_top_to_bottom(notebook, which, request, monkeypatch, python3_kernel):
    import nbformat
    from nbclient import NotebookClient

    run_dir = request.getfixturevalue(which)
    monkeypatch.setenv("CAVIAR_RUN_DIR", str(run_dir))
    nb = nbformat.read(REPO / "notebooks" / f"{notebook}.ipynb", as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    plots = sum("analysis.plot_" in c.source for c in nb.cells if c.cell_type == "code")
    assert len(images) == plots  # every plot shows once
    text = "".join(o.get("text", "") for o in outputs)
    assert str(run_dir) in text
    if notebook == "coarse_to_fine" and which != "real_run":
        assert "This run has no regions" in text
    if notebook == "overview":
        run = analysis.load(run_dir)
        assert (analysis.audit_text(run) or "no stopping audit (scheduler: ") in text
