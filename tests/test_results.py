import random
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from faulty_fs import FullDisk

from caviar import objective
from caviar.errors import RunDirError
from caviar.results import (
    TrialDir,
    TrialRecord,
    _collect_columns,
    asha_rungs,
    build_tables,
    collect,
    dedupe,
    leaderboard,
    load_trials,
    trial_status,
    write_parquet,
)
from caviar.session import FINAL
from caviar.storage import Location


def hist(*values, **extra):
    return [
        {"epoch": i + 1, "acc": v, "trial_id": "x", "done": False, **extra}
        for i, v in enumerate(values)
    ]


RECORDS = [
    TrialRecord("a", {"lr": 0.1, "opt": "sgd"}, hist(0.5, 0.7, 0.6)),
    TrialRecord("b", {"lr": 0.01, "opt": "adamw"}, hist(0.4), stopped_by_asha=True),
    TrialRecord(
        "c",
        {"lr": 1.0, "opt": "sgd"},
        hist(0.3) + [{"epoch": 2, "acc": float("nan"), "diverged": True}],
    ),
    TrialRecord(
        "d", {"lr": 0.2, "opt": "sgd"}, [], error="Traceback...\nValueError: boom", round=1
    ),
]


def test_status_rule():
    assert trial_status({"epoch": 3}, errored=True, max_epochs=3) == "error"
    assert trial_status({"epoch": 1, "diverged": True}, errored=False, max_epochs=3) == "diverged"
    assert trial_status({"epoch": 1}, errored=False, max_epochs=3) == "early_stopped"
    assert trial_status({"epoch": 3}, errored=False, max_epochs=3) == "completed"
    assert trial_status({"epoch": 1, FINAL: True}, errored=False, max_epochs=3) == "completed"
    assert trial_status(None, errored=False, max_epochs=3) == "early_stopped"


def test_the_columns_trials_parquet_fills_itself_are_names_a_metric_cannot_have():
    """objective.RESERVED lists them for spec validation (which must not import the tables'
    code): a column added to the trial rows without it would be overwritten by a metric of
    its name, as `error` and `status` were."""
    trials, _ = build_tables(RECORDS, "acc", "max", max_epochs=3, rungs=[1.0, 3.0])
    own = {c for c in trials.columns if not c.startswith("param_")} - {"acc", "best_acc"}
    assert own <= objective.RESERVED, own - objective.RESERVED


def test_dedupe_keeps_the_last_report_of_each_epoch_in_order():
    rows = [{"epoch": 1, "v": 1}, {"epoch": 2, "v": 2}, {"epoch": 2, "v": 3}, {"epoch": 3, "v": 4}]
    assert dedupe(rows) == [{"epoch": 1, "v": 1}, {"epoch": 2, "v": 3}, {"epoch": 3, "v": 4}]


def test_a_replay_from_a_checkpoint_supersedes_what_the_dead_run_reported_past_it():
    # Reported up to epoch 5, died; restored from the epoch-2 checkpoint, stopped at epoch 4.
    rows = [{"epoch": e, "run": 1} for e in (1, 2, 3, 4, 5)] + [
        {"epoch": e, "run": 2} for e in (3, 4)
    ]
    assert [(r["epoch"], r["run"]) for r in dedupe(rows)] == [(1, 1), (2, 1), (3, 2), (4, 2)]


def test_tables_follow_the_documented_schema():
    trials, history = build_tables(RECORDS, "acc", "max", 3)
    assert list(trials["trial_id"]) == ["a", "b", "c", "d"]
    assert list(trials["status"]) == ["completed", "early_stopped", "diverged", "error"]
    assert list(trials["epochs"]) == [3, 1, 2, 0]
    assert list(trials["round"]) == [0, 0, 0, 1]
    assert list(trials["stopped_by_asha"]) == [False, True, False, False]
    assert trials["acc"].tolist()[:2] == [0.6, 0.4]
    assert trials["best_acc"].tolist()[:3] == [0.7, 0.4, 0.3]
    assert trials.loc[3, "error"].endswith("ValueError: boom")
    for col in ("param_lr", "param_opt", "node_id", "wall_time_s"):
        assert col in trials
    assert trials["epochs"].dtype == "int64" and trials["round"].dtype == "int64"
    assert list(history.columns) == ["trial_id", "epoch", "acc"]
    assert not history.duplicated(["trial_id", "epoch"]).any()
    assert len(history) == 3 + 1 + 2
    assert history["epoch"].dtype == "int64"


def test_leaderboard_ranks_healthy_trials_only():
    trials, _ = build_tables(RECORDS, "acc", "max", 3)
    assert list(leaderboard(trials, "acc", "max")["trial_id"]) == ["a", "b"]
    assert list(leaderboard(trials, "acc", "min", top=1)["trial_id"]) == ["b"]


def test_leaderboard_breaks_a_tie_in_best_by_the_last_value():
    # Both peaked at 0.979; "held" ended there, "peaked" fell back (a digits CNN of the bank).
    trials = pd.DataFrame(
        {
            "trial_id": ["peaked", "held", "lower"],
            "status": ["completed"] * 3,
            "acc": [0.948, 0.979, 0.975],
            "best_acc": [0.979, 0.979, 0.975],
        }
    )
    assert list(leaderboard(trials, "acc", "max")["trial_id"]) == ["held", "peaked", "lower"]
    flipped = trials.assign(acc=-trials["acc"], best_acc=-trials["best_acc"])
    assert list(leaderboard(flipped, "acc", "min")["trial_id"]) == ["held", "peaked", "lower"]


def test_parquet_round_trip_with_metadata_and_no_leftovers(tmp_path):
    trials, _ = build_tables(RECORDS, "acc", "max", 3)
    write_parquet(trials, Location.of(tmp_path) / "trials.parquet", {"caviar.spec": "name: t"})
    assert pq.read_schema(tmp_path / "trials.parquet").metadata[b"caviar.spec"] == b"name: t"
    back = load_trials(tmp_path)
    pd.testing.assert_frame_equal(back, trials, check_dtype=False)
    assert [p.name for p in tmp_path.iterdir()] == ["trials.parquet"]


def test_a_full_disk_mid_write_keeps_the_previous_file(tmp_path):
    target = Location.of(tmp_path) / "trials.parquet"
    trials, _ = build_tables(RECORDS, "acc", "max", 3)
    write_parquet(trials, target, {})

    full = Location(FullDisk(), target.path, target.uri)
    with pytest.raises(OSError, match="No space left"):
        write_parquet(trials.head(1), full, {})
    assert len(load_trials(tmp_path)) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["trials.parquet"]


def test_missing_results_are_a_user_error(tmp_path):
    with pytest.raises(RunDirError, match="no trials.parquet here; pass the run directory"):
        load_trials(tmp_path)


def test_rung_is_the_highest_asha_milestone_reached():
    trials, _ = build_tables(RECORDS, "acc", "max", 27, rungs=[1, 3, 9, 27])
    assert list(trials["rung"]) == [1, 0, 0, -1]  # epochs 3, 1, 2, 0
    assert build_tables(RECORDS, "acc", "max", 3)[0]["rung"].isna().all()


def test_files_of_another_tool_or_a_newer_schema_are_refused(tmp_path):
    import pyarrow as pa

    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "trials.parquet")
    with pytest.raises(RunDirError, match="not written by caviar"):
        load_trials(tmp_path)
    newer = pa.table({"a": [1]}).replace_schema_metadata({b"caviar.schema_version": b"99"})
    pq.write_table(newer, tmp_path / "trials.parquet")
    with pytest.raises(
        RunDirError,
        match=r"written by a newer caviar \(schema version 99; this caviar reads up to version 1\); upgrade",
    ):
        load_trials(tmp_path)


def _trial_dirs(root, files, errors=()):
    import json

    dirs = []
    for name, rows in files.items():
        d = root / name
        d.mkdir()
        text = "".join(json.dumps(r) + "\n" for r in rows)
        if name == "t1":
            text = "\n" + text + '{"epoch": 4, "acc'  # a blank first line, a partial last one
        (d / "result.json").write_text(text)
        if name in errors:
            (d / "error.txt").write_text("Traceback...\nValueError: boom")
        config = next((r["config"] for r in rows if "config" in r), None)
        dirs.append(TrialDir(name, Location.of(d), config, round=1, stopped_by_asha=name == "t3"))
    return dirs


EDGE_CASES = {
    "t1": [{"epoch": e, "acc": 0.1 * e, "config": {"lr": 0.1}} for e in (1, 2, 3, 2, 3)],
    "t2": [
        {
            "epoch": 1,
            "acc": float("nan"),
            "loss": float("inf"),
            "diverged": True,
            "config": {"lr": 1.0},
        }
    ],
    "t3": [{"epoch": 1.0, "acc": 0.5, "note": "x", "config": {"lr": 0.2}}],
    "t4": [],
    "t5": [
        {"epoch": e, "acc": -float("inf") if e == 2 else 0.2, "config": {"lr": 0.3}} for e in (1, 2)
    ],
    "t6": [],  # never started: no results, no error, no config
    # Reported 1-3, restored from the epoch-1 checkpoint, reported 2 and stopped: 3 is stale.
    "t7": [{"epoch": e, "acc": 0.1 * e, "config": {"lr": 0.4}} for e in (1, 2, 3, 2)],
}


@pytest.mark.parametrize("mode", ["max", "min"])
def test_collect_in_columns_gives_the_tables_of_the_per_line_path(tmp_path, mode):
    dirs = _trial_dirs(tmp_path, EDGE_CASES, errors={"t4"})
    fast = collect(dirs, "acc", mode, 3, rungs=[1, 3])
    slow = collect(dirs, "acc", mode, 3, rungs=[1, 3], fast=False)
    for got, want in zip(fast, slow, strict=True):
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
    trials, history = fast
    assert list(trials["trial_id"]) == ["t1", "t2", "t3", "t4", "t5", "t7"]
    assert list(trials["status"]) == [
        "completed",
        "diverged",
        "early_stopped",
        "error",
        "early_stopped",
        "early_stopped",
    ]
    assert list(history[history.trial_id == "t1"]["epoch"]) == [1, 2, 3]  # replayed epochs once
    assert list(history[history.trial_id == "t7"]["epoch"]) == [1, 2]
    assert trials.set_index("trial_id").loc["t1", "best_acc"] == pytest.approx(
        0.3 if mode == "max" else 0.1
    )


def test_collect_falls_back_when_a_value_changes_type(tmp_path):
    files = {
        "a": [{"epoch": 1, "acc": 0.1, "note": "text"}],
        "b": [{"epoch": 1, "acc": 0.2, "note": 7}],
    }
    dirs = _trial_dirs(tmp_path, files)
    assert _collect_columns(dirs, "acc", "max", 1, None) is None
    trials, history = collect(dirs, "acc", "max", 1)
    assert list(trials["best_acc"]) == [0.1, 0.2] and list(history["note"]) == ["text", 7]


def test_asha_rungs_as_ray_places_them():
    assert asha_rungs(3, 3, 27) == [3, 9, 27]
    assert asha_rungs(1, 4, 20) == [1, 4, 16]
    assert asha_rungs(1, 1.5, 3) == [1, 1.5, 2.25]  # no duplicates from rounding


WRITER = """
import sys

import numpy as np
import pandas as pd
from faulty_fs import DiesMidWrite

from caviar.results import write_parquet
from caviar.storage import Location

target, rows, how = Location.of(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if how == "die-mid-write":
    target = Location(DiesMidWrite(), target.path, target.uri)
versions = [pd.DataFrame({f"c{i}": np.full(rows, v) for i in range(8)}) for v in (1.0, 2.0)]
print("writing", flush=True)
for i in range(10**9):
    write_parquet(versions[i % 2], target, {})
"""


def test_a_writer_killed_mid_write_leaves_the_previous_file_whole(tmp_path):
    """kill -9 a process that rewrites trials.parquet in a loop, at random moments, then one
    killed in the middle of writing the file's bytes: each time the file is one whole version
    or another, never a part; a kill mid-write leaves a dot-named temporary file, which
    directory readers skip."""
    target = tmp_path / "trials.parquet"
    rows = 300_000
    write_parquet(pd.DataFrame({"c0": [0.0]}), Location.of(target), {})
    rng = random.Random(0)
    for how in ["random"] * 10 + ["die-mid-write"]:
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), str(rows), how],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parent,  # where faulty_fs is
        )
        assert writer.stdout.readline() == b"writing\n"
        if how == "random":
            time.sleep(rng.uniform(0.2, 0.6))
            writer.kill()
        assert writer.wait() == -9
        back = load_trials(tmp_path)  # the schema check included
        values = set(back.to_numpy().ravel())
        assert len(back) in (1, rows) and len(values) == 1 and values <= {0.0, 1.0, 2.0}
    leftovers = [p for p in tmp_path.iterdir() if p.name != "trials.parquet"]
    assert leftovers and all(p.name.startswith(".trials.parquet.") for p in leftovers)
    assert any(p.stat().st_size > 0 for p in leftovers)  # half a file was written
    assert len(pd.read_parquet(tmp_path)) == len(load_trials(tmp_path))  # readers skip them


def test_earlier_trials_for_a_warm_start_skip_what_lies_outside_the_space(tmp_path):
    from caviar.results import earlier_trials, write_results
    from caviar.space import Choice, Fixed, Float, Space

    trials, history = build_tables(RECORDS, "acc", "max", 3)
    write_results(Location.of(tmp_path), trials, history, "name: x\n")
    space = Space(
        (("lr", Float(0.005, 0.5, "log")), ("opt", Choice(("sgd", "adamw"))), ("k", Fixed(1)))
    )
    found, skipped = earlier_trials([str(tmp_path)], space, "acc")
    assert found == [] and skipped == 4  # no trial had k = 1
    space = Space((("lr", Float(0.005, 0.5, "log")), ("opt", Choice(("sgd", "adamw")))))
    found, skipped = earlier_trials([str(tmp_path)], space, "acc")
    # a (lr 0.1), b (0.01), c (diverged, lr 1.0: outside), d (error, lr 0.2)
    assert [c["lr"] for c, _ in found] == [0.1, 0.01, 0.2] and skipped == 1
    statuses = [o.status for _, o in found]
    assert statuses == ["completed", "early_stopped", "error"]
    assert found[0][1].best == 0.7 and found[0][1].value == 0.6 and found[0][1].epoch == 3
