"""The catalog across sweeps, read by caviar, pandas, pyarrow, DuckDB and Polars exactly as the
docstring of caviar/catalog.py tells users to."""

import math
import os

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from caviar import catalog
from caviar.errors import CaviarError, RunDirError
from caviar.results import TrialRecord, build_tables, write_results
from caviar.storage import Location


def hist(*values, **extra):
    return [{"epoch": i + 1, "acc": v, **extra} for i, v in enumerate(values)]


# Two sweeps whose searched parameters differ: "alpha" searches lr (a float) and opt (text),
# "2026" (a name that looks like a number) searches lr (an int here) and hidden, and reports
# a metric, loss, that alpha does not.
SWEEPS = {
    "alpha": [
        TrialRecord("a1", {"lr": 0.1, "opt": "sgd"}, hist(0.5, 0.6, 0.7)),
        TrialRecord("a2", {"lr": 0.2, "opt": "adamw"}, hist(0.4)),
    ],
    "2026": [
        TrialRecord("b1", {"lr": 1, "hidden": 32}, hist(0.5, 0.6, loss=1.0)),
        TrialRecord("b2", {"lr": 2, "hidden": 64}, [], error="Traceback...\nValueError: boom"),
        TrialRecord("b3", {"lr": 3, "hidden": 128}, hist(0.1, loss=2.0)),
    ],
}
TRIAL_ROWS = {"alpha": 2, "2026": 3}
HISTORY_ROWS = {"alpha": 4, "2026": 3}


def make_run(storage, name, records, spec="name: t"):
    trials, history = build_tables(records, "acc", "max", 3)
    run = Location.of(storage) / name
    run.mkdir()
    write_results(run, trials, history, spec)
    return run


@pytest.fixture
def storage(tmp_path):
    for name, records in SWEEPS.items():
        catalog.publish(make_run(tmp_path, name, records, spec=f"name: {name}"))
    return tmp_path


def check_trials(df: pd.DataFrame) -> None:
    """What every reader must give for the trials table of the two sweeps."""
    assert len(df) == 5
    assert df["sweep"].value_counts().to_dict() == TRIAL_ROWS
    assert all(isinstance(s, str) for s in df["sweep"])
    df = df.sort_values("trial_id").set_index("trial_id")
    assert df.loc[["a1", "a2", "b1", "b2", "b3"], "sweep"].tolist() == ["alpha"] * 2 + ["2026"] * 3
    # lr is a float in one sweep and an int in the other: one float column.
    assert df["param_lr"].tolist() == [0.1, 0.2, 1.0, 2.0, 3.0]
    # Columns a sweep lacks are null in its rows, present in the other's.
    assert df.loc[["a1", "a2"], "param_hidden"].isna().all()
    assert df.loc[["b1", "b2", "b3"], "param_hidden"].tolist() == [32, 64, 128]
    assert df.loc[["b1", "b2", "b3"], "param_opt"].isna().all()
    assert df.loc[["a1", "a2"], "param_opt"].tolist() == ["sgd", "adamw"]
    assert df.loc["b2", "status"] == "error" and df.loc["a1", "status"] == "completed"
    assert df.loc["a1", "best_acc"] == 0.7


def check_history(df: pd.DataFrame) -> None:
    assert len(df) == 7
    assert df["sweep"].value_counts().to_dict() == HISTORY_ROWS
    alpha, other = df[df["sweep"] == "alpha"], df[df["sweep"] == "2026"]
    assert alpha["loss"].isna().all()
    assert sorted(other["loss"].tolist()) == [1.0, 1.0, 2.0]
    assert not df.duplicated(["sweep", "trial_id", "epoch"]).any()


def test_publish_writes_hive_partitions_without_a_sweep_column(storage):
    for table, source in (("trials", "trials.parquet"), ("history", "history.parquet")):
        for name in SWEEPS:
            part = storage / "_catalog" / table / f"sweep={name}"
            assert os.listdir(part) == ["part-0.parquet"]  # no temporary files left
            schema = pq.read_schema(part / "part-0.parquet")
            assert "sweep" not in schema.names
            assert schema.metadata[b"caviar.spec"] == f"name: {name}".encode()
            # A copy of the run's table.
            original = pq.read_table(storage / name / source)
            assert pq.read_table(part / "part-0.parquet").equals(original)


def test_caviar_read_and_dataset(storage):
    check_trials(catalog.read(storage, "trials"))
    check_history(catalog.read(storage, "history"))
    dset = catalog.dataset(storage, "trials")
    assert isinstance(dset, ds.Dataset)
    assert dset.schema.field("sweep").type == pa.string()
    assert dset.schema.names[0] == "sweep"
    assert dset.count_rows() == 5
    filtered = dset.to_table(filter=ds.field("sweep") == "2026")
    assert filtered.num_rows == 3


def test_pandas_one_call(storage):
    cat = f"{storage}/_catalog"
    trials = pd.read_parquet(f"{cat}/trials", schema=catalog.dataset(storage).schema)
    check_trials(trials)
    history = pd.read_parquet(f"{cat}/history", schema=catalog.dataset(storage, "history").schema)
    check_history(history)


def test_pyarrow_one_call(storage):
    cat = f"{storage}/_catalog"
    dset = ds.dataset(f"{cat}/trials", partitioning="hive", schema=catalog.dataset(storage).schema)
    check_trials(dset.to_table().to_pandas())


def test_duckdb_one_call(storage):
    duckdb = pytest.importorskip("duckdb")
    cat = f"{storage}/_catalog"
    for table, check in (("trials", check_trials), ("history", check_history)):
        rel = duckdb.sql(
            f"SELECT * FROM read_parquet('{cat}/{table}/*/*.parquet', hive_partitioning=true,"
            " union_by_name=true, hive_types={'sweep': 'VARCHAR'})"
        )
        check(rel.df())


def test_polars_one_call(storage):
    pl = pytest.importorskip("polars")
    cat = f"{storage}/_catalog"
    for table, check in (("trials", check_trials), ("history", check_history)):
        lazy = pl.scan_parquet(
            f"{cat}/{table}/*/*.parquet",
            hive_partitioning=True,
            schema=pl.from_arrow(catalog.dataset(storage, table).schema.empty_table()).schema,
            missing_columns="insert",
            cast_options=pl.ScanCastOptions(integer_cast="allow-float"),
        )
        check(lazy.collect().to_pandas())
        check(pl.scan_pyarrow_dataset(catalog.dataset(storage, table)).collect().to_pandas())


def test_publishing_again_replaces_the_sweep(storage):
    catalog.publish(storage / "alpha")
    catalog.publish(str(storage / "alpha"))
    check_trials(catalog.read(storage))
    # A resumed run with more trials: the catalog follows.
    records = SWEEPS["alpha"] + [TrialRecord("a3", {"lr": 0.3, "opt": "sgd"}, hist(0.9))]
    trials, history = build_tables(records, "acc", "max", 3)
    write_results(Location.of(storage) / "alpha", trials, history, "name: alpha")
    catalog.publish(storage / "alpha")
    assert catalog.read(storage)["sweep"].value_counts().to_dict() == {"alpha": 3, "2026": 3}


def test_file_uri_storage(tmp_path):
    uri = f"file://{tmp_path}"
    make_run(tmp_path, "one", SWEEPS["alpha"])
    catalog.publish(f"{uri}/one")
    make_run(tmp_path, "two", SWEEPS["2026"])
    catalog.publish(Location.of(uri) / "two")
    assert (tmp_path / "_catalog" / "history" / "sweep=two" / "part-0.parquet").is_file()
    df = catalog.read(uri, "trials")
    assert df["sweep"].tolist() == ["one", "one", "two", "two", "two"]


def test_a_name_that_needs_encoding_reads_back_unchanged(tmp_path):
    name = "my run=1%"
    catalog.publish(make_run(tmp_path, name, SWEEPS["alpha"]))
    assert os.listdir(tmp_path / "_catalog" / "trials") == ["sweep=my%20run%3D1%25"]
    assert set(catalog.read(tmp_path)["sweep"]) == {name}
    duckdb = pytest.importorskip("duckdb")
    rows = duckdb.sql(
        f"SELECT DISTINCT sweep FROM read_parquet('{tmp_path}/_catalog/trials/*/*.parquet',"
        " hive_partitioning=true, hive_types={'sweep': 'VARCHAR'})"
    ).fetchall()
    assert rows == [(name,)]


def test_clashing_types_read_as_text(tmp_path):
    catalog.publish(make_run(tmp_path, "s1", [TrialRecord("x", {"p": "wide"}, hist(0.1))]))
    catalog.publish(make_run(tmp_path, "s2", [TrialRecord("y", {"p": 0.5}, hist(0.2))]))
    df = catalog.read(tmp_path).set_index("trial_id")
    assert df.loc["x", "param_p"] == "wide"
    assert float(df.loc["y", "param_p"]) == 0.5


def test_a_publish_in_progress_is_not_read(storage):
    tmp = storage / "_catalog" / "trials" / "sweep=alpha" / "part-0.parquet.1234abcd.tmp"
    tmp.write_bytes(b"PAR1 half a file")
    check_trials(catalog.read(storage))


def test_null_only_column_takes_the_other_sweeps_type(tmp_path):
    catalog.publish(make_run(tmp_path, "s1", [TrialRecord("x", {"p": None}, hist(0.1))]))
    catalog.publish(make_run(tmp_path, "s2", [TrialRecord("y", {"p": 2.5}, hist(0.2))]))
    assert catalog.dataset(tmp_path).schema.field("param_p").type == pa.float64()
    values = catalog.read(tmp_path).set_index("trial_id")["param_p"]
    assert math.isnan(values["x"]) and values["y"] == 2.5


def test_empty_or_missing_storage_is_a_clear_error(tmp_path):
    with pytest.raises(RunDirError, match=r"no sweeps in the catalog .*publish"):
        catalog.dataset(tmp_path)
    with pytest.raises(RunDirError, match="does not exist"):
        catalog.read(tmp_path / "nope", "history")
    (tmp_path / "_catalog" / "trials").mkdir(parents=True)
    with pytest.raises(RunDirError, match="no sweeps in the catalog"):
        catalog.read(tmp_path)


def test_unknown_table_is_a_user_error(storage):
    with pytest.raises(CaviarError, match="unknown table 'trial'; did you mean 'trials'"):
        catalog.dataset(storage, "trial")


def test_publish_needs_a_finished_run(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(RunDirError, match=r"half: no history.parquet here"):
        catalog.publish(tmp_path / "half")
    assert not (tmp_path / "_catalog").exists()


def test_a_metric_named_sweep_is_refused(tmp_path):
    records = [TrialRecord("x", {"p": 1}, hist(0.1, sweep=3.0))]
    with pytest.raises(RunDirError, match="column named 'sweep'"):
        catalog.publish(make_run(tmp_path, "s1", records))
    assert not (tmp_path / "_catalog").exists()
