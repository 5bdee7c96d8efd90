"""A catalog across sweeps: every published run's tables, side by side, queryable as one.

Run directories live at ``<storage>/<name>/``. :func:`publish` copies a run's
``trials.parquet`` and ``history.parquet`` into a hive-partitioned dataset beside them::

    <storage>/_catalog/trials/sweep=<name>/part-0.parquet
    <storage>/_catalog/history/sweep=<name>/part-0.parquet

The sweep name (the run directory's name, percent-encoded where it is not ``[A-Za-z0-9_.~-]``,
which every reader below decodes) is only in the directory name, never a column inside the
files. Publishing a run again (after ``caviar resume``) replaces its files atomically; the
files keep the run's Parquet metadata (``caviar.spec``, ``caviar.schema_version``).

Sweeps search different hyperparameters, so their ``param_*`` columns differ (and a parameter
can be an int in one sweep and a float in another). A reader must take the union of every
file's columns, which most readers do *not* do by default: pandas and pyarrow take the first
file's schema and silently drop the other sweeps' extra columns. :func:`dataset` does it
right (``pyarrow.unify_schemas`` over the files' schemas, ints promoted to floats where they
meet, a type clash read as text), and :func:`read` gives a pandas DataFrame. A column a sweep
lacks reads as null in its rows. ``sweep`` is always a string (a sweep named ``2026`` stays
``"2026"``). One call per library, each checked in ``tests/test_catalog.py``
(``cat = f"{storage}/_catalog"``)::

    # caviar (pyarrow underneath)
    from caviar import catalog
    trials = catalog.read(storage, "trials")                  # pandas.DataFrame
    dset = catalog.dataset(storage, "history")                # pyarrow.dataset.Dataset

    # pandas: pass the unified schema, or columns only the first sweep lacks are dropped
    pd.read_parquet(f"{cat}/trials", schema=catalog.dataset(storage).schema)

    # pyarrow: the same; without schema= its schema is the first file's
    pyarrow.dataset.dataset(f"{cat}/trials", partitioning="hive",
                            schema=catalog.dataset(storage).schema)

    # DuckDB: union_by_name unifies the columns itself; hive_types keeps sweep a string
    duckdb.sql(f"SELECT * FROM read_parquet('{cat}/trials/*/*.parquet', hive_partitioning=true,"
               " union_by_name=true, hive_types={'sweep': 'VARCHAR'})")

    # Polars: scan_parquet takes the first file's schema, so pass the union and let it insert
    # the columns a file lacks (or: pl.scan_pyarrow_dataset(catalog.dataset(storage)))
    pl.scan_parquet(f"{cat}/trials/*/*.parquet", hive_partitioning=True,
                    schema=pl.from_arrow(catalog.dataset(storage).schema.empty_table()).schema,
                    missing_columns="insert",
                    cast_options=pl.ScanCastOptions(integer_cast="allow-float"))

The DuckDB and Polars globs (``*/*.parquet``) skip the temporary file an in-progress publish
writes beside its target (``part-0.parquet.<hex>.tmp``), and so does :func:`dataset`; the
plain pandas and pyarrow directory calls list every file, so they can trip over one while
another process is publishing. On an object store (``s3://``, ``gs://``) pass the pyarrow
filesystem (``filesystem=``) or use :func:`dataset`, which takes the storage URI.
"""

from __future__ import annotations

import posixpath
import urllib.parse
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from caviar.errors import CaviarError, RunDirError, did_you_mean
from caviar.results import HISTORY_FILE, TRIALS_FILE
from caviar.storage import Location

CATALOG_DIR = "_catalog"
PARTITION = "sweep"
PART_FILE = "part-0.parquet"
TABLES = {"trials": TRIALS_FILE, "history": HISTORY_FILE}
# Written after history: a reader that sees a sweep's trials also sees its history.
_PUBLISH_ORDER = ("history", "trials")


def _as_location(where: Location | str | Path) -> Location:
    return where if isinstance(where, Location) else Location.of(where)


def _parent(loc: Location) -> Location:
    path = posixpath.dirname(loc.path)
    suffix = "/" + loc.name
    uri = loc.uri[: -len(suffix)] if loc.uri.endswith(suffix) else path
    return Location(loc.fs, path, uri)


def _check_table(table: str) -> None:
    if table not in TABLES:
        raise CaviarError(
            f"catalog: unknown table {table!r}{did_you_mean(table, TABLES)} "
            f"(tables: {', '.join(TABLES)})"
        )


def catalog_dir(storage: Location | str | Path, table: str = "trials") -> Location:
    """``<storage>/_catalog/<table>``: the root of one table's hive-partitioned dataset."""
    _check_table(table)
    return _as_location(storage) / CATALOG_DIR / table


def partition_dir(storage: Location | str | Path, table: str, sweep: str) -> Location:
    """``<storage>/_catalog/<table>/sweep=<name>``, the name percent-encoded as hive does."""
    return catalog_dir(storage, table) / f"{PARTITION}={urllib.parse.quote(sweep, safe='')}"


def publish(run_dir: Location | str | Path) -> None:
    """Copy a finished run's trials and history tables into ``<storage>/_catalog/``.

    The storage root is the run directory's parent and the sweep name its basename. Each
    file is written atomically (``Location.write_bytes``); publishing again replaces them.
    """
    run = _as_location(run_dir)
    sweep = run.name
    if not sweep or sweep == CATALOG_DIR:
        raise RunDirError(f"{run.uri}: not a run directory; pass the one `caviar run` printed")
    data = {}
    for table in _PUBLISH_ORDER:
        src = run / TABLES[table]
        if not src.is_file():
            raise RunDirError(
                f"{run.uri}: no {TABLES[table]} here; pass the run directory that `caviar run` "
                "printed, after the sweep has finished"
            )
        raw = src.read_bytes()
        names = pq.read_schema(pa.BufferReader(raw)).names
        if PARTITION in names:
            raise RunDirError(
                f"{src.uri}: has a column named {PARTITION!r}, which the catalog uses for the "
                "sweep name; rename that metric to publish this run"
            )
        data[table] = raw
    storage = _parent(run)
    for table in _PUBLISH_ORDER:
        part = partition_dir(storage, table, sweep)
        part.mkdir()
        (part / PART_FILE).write_bytes(data[table])


def _files(root: Location) -> list[str]:
    """The published files under one table's root, in sweep order; temporary files skipped."""
    info = root.fs.get_file_info(root.path)
    if info.type != pafs.FileType.Directory:
        return []
    files = []
    for f in root.fs.get_file_info(pafs.FileSelector(root.path, recursive=True)):
        parent = posixpath.basename(posixpath.dirname(f.path))
        if (
            f.type == pafs.FileType.File
            and f.base_name.endswith(".parquet")
            and not f.base_name.startswith((".", "_"))
            and parent.startswith(f"{PARTITION}=")
            and posixpath.dirname(posixpath.dirname(f.path)) == root.path.rstrip("/")
        ):
            files.append(f.path)
    return sorted(files)


def _unify(schemas: list[pa.Schema]) -> pa.Schema:
    """The union of the files' columns. Types are promoted where Arrow can (int64 and double
    give double, null and anything give that thing); a column whose types clash (text in one
    sweep, numbers in another) is read as text rather than failing the whole catalog."""
    schemas = [s.remove_metadata() for s in schemas]
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    fields: dict[str, pa.Field] = {}
    for schema in schemas:
        for field in schema:
            seen = fields.get(field.name)
            if seen is None:
                fields[field.name] = field.with_nullable(True)
                continue
            try:
                merged = pa.unify_schemas(
                    [pa.schema([seen]), pa.schema([field])], promote_options="permissive"
                )
                fields[field.name] = merged.field(0)
            except (pa.ArrowTypeError, pa.ArrowInvalid):
                fields[field.name] = pa.field(field.name, pa.large_string())
    return pa.schema(list(fields.values()))


def dataset(storage: Location | str | Path, table: str = "trials") -> ds.Dataset:
    """Every published sweep's ``table`` as one pyarrow Dataset: hive-partitioned on
    ``sweep`` (a string), with the union of all sweeps' columns (missing ones read as null)."""
    root = catalog_dir(storage, table)
    files = _files(root)
    if not files:
        store = _as_location(storage)
        where = "does not exist" if not store.exists() else f"has no {CATALOG_DIR}/{table}"
        raise RunDirError(
            f"{store.uri}: no sweeps in the catalog ({store.uri} {where}); pass the storage "
            "root that holds the run directories, and publish a run with "
            "caviar.catalog.publish(RUN_DIR)"
        )

    def open_files(schema: pa.Schema | None) -> ds.Dataset:
        return ds.dataset(
            files,
            schema=schema,
            filesystem=root.fs,
            format="parquet",
            partitioning=ds.partitioning(pa.schema([(PARTITION, pa.string())]), flavor="hive"),
            partition_base_dir=root.path,
        )

    unified = _unify([fragment.physical_schema for fragment in open_files(None).get_fragments()])
    columns = [f for f in unified if f.name != PARTITION]
    return open_files(pa.schema([pa.field(PARTITION, pa.string()), *columns]))


def read(storage: Location | str | Path, table: str = "trials") -> pd.DataFrame:
    """Every published sweep's ``table`` as one pandas DataFrame, ``sweep`` first."""
    return dataset(storage, table).to_table().to_pandas()
