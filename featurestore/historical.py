"""Point-in-time features for any entity rows: the one road from (customer, moment) to the
snapshot features serving had at that moment. The training set takes it too
(``assets/training/dataset.py``), so a data scientist's frame and the model's rows agree.

The rules are the architecture's (docs/architecture.md, "Point-in-time correctness"): a row at
``t`` gets the snapshot partition with the greatest ``available_at <= t`` (``as_of + lag``, or
when its online load ended, if later), whichever customers it holds; a customer absent from
that partition gets nulls and ``customer_known`` false, never an older row of theirs; so does a
row before the first available snapshot. Numbers come back as the online store holds them
(float32, NaN for null), so a model trained on them sees what serving feeds it.

The join runs in DuckDB: entity rows are copied into it (spilling to disk past its memory
limit), never into Python objects, and the result streams out in record batches, to a frame or
to a Parquet file or Delta table.
"""

from __future__ import annotations

import difflib
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake

from featurestore.point_in_time import point_in_time_sql
from featurestore.registry import load_feature_set
from resources.lakehouse import CUSTOMER_FEATURES, ONLINE_LOADS, Lakehouse
from riskcore import settings
from riskcore.feature_set import FeatureColumn, FeatureSet

ADDED = ("snapshot_as_of", "customer_known")  # the columns every result gains
_ROW, _TS = "__entity_row", "__entity_ts"  # internal: input order, the moment in UTC
BATCH_ROWS = 131_072
# DuckDB spills the join past this (to a temporary folder): 10M entity rows against 90 days of
# snapshots run in a few GB, on a laptop as on a worker.
MEMORY_LIMIT = "3GB"


class FeatureStoreError(ValueError):
    """A request the feature store cannot answer; the message names what to change."""


class FeatureStoreWarning(UserWarning):
    """Something about the entity rows worth knowing that does not stop the query."""


@dataclass(frozen=True)
class Written:
    """A result written to a file: where, and how many rows."""

    path: str
    rows: int
    format: str  # parquet | delta


def resolve_features(feature_set: FeatureSet, names: Sequence[str] | None) -> list[FeatureColumn]:
    """The requested snapshot columns (default: every model feature), by name, in the order
    asked; an unknown name fails naming the closest known ones."""
    servable = {c.name: c for c in (*feature_set.features, *feature_set.context)}
    if names is None:
        return list(feature_set.features)
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in servable]
    if unknown:
        hints = {n: difflib.get_close_matches(n, servable, n=3) for n in unknown}
        raise FeatureStoreError(
            "unknown feature(s): "
            + "; ".join(
                f"{n!r}" + (f" (did you mean {', '.join(h)}?)" if h else "")
                for n, h in hints.items()
            )
            + f". Known: {', '.join(servable)} (feature set {feature_set.version})"
        )
    return [servable[n] for n in dict.fromkeys(names)]


def usable_partitions(
    days: Sequence[date], first: datetime, last: datetime, lag: timedelta
) -> list[date]:
    """The snapshot partitions a row between ``first`` and ``last`` can be joined with: those
    planned available inside the span and the two before it (a late load may have held the
    last of them back, leaving its predecessor in force)."""
    start = lambda d: datetime(d.year, d.month, d.day, tzinfo=UTC) + lag  # noqa: E731
    before = [d for d in days if start(d) <= first]
    inside = [d for d in days if first < start(d) <= last]
    return before[-2:] + inside


def snapshot_join(
    con: duckdb.DuckDBPyConnection,
    lakehouse: Lakehouse,
    entities: str,
    columns: Sequence[str],
    lag: timedelta,
    first: datetime,
    last: datetime,
    event_ts: str = "event_ts",
) -> str:
    """Registers the snapshot partitions rows between ``first`` and ``last`` can use (and the
    online loads) in ``con``; returns the point-in-time SQL over the relation ``entities``
    (``customer_id``, ``event_ts``, ...). What the SDK and the training set both run."""
    days = lakehouse.partition_dates(CUSTOMER_FEATURES, "as_of_date")
    dataset = lakehouse.dataset(CUSTOMER_FEATURES)
    if dataset is None:
        raise FeatureStoreError(
            f"no snapshot table at {lakehouse.uri(CUSTOMER_FEATURES)}: build one first "
            "(make demo, or the daily_features job), or point RISK_DATA_DIR at a data folder"
        )
    snapshots = dataset.filter(
        pc.field("as_of_date").isin(usable_partitions(days, first, last, lag))
    )
    con.register("fs_snapshots", snapshots)
    loads = lakehouse.dataset(ONLINE_LOADS)
    if loads is not None:
        con.register("fs_online_loads", loads)
    return point_in_time_sql(
        list(columns),
        lag,
        entities,
        "fs_snapshots",
        loads="fs_online_loads" if loads is not None else None,
        event_ts=event_ts,
    )


def historical_features(
    entities: Any,
    features: Sequence[str] | None = None,
    *,
    timestamp_column: str = "event_ts",
    lag: timedelta | None = None,
    output: str | Path | None = None,
    lakehouse: Lakehouse | None = None,
    progress: Callable[[int], None] | None = None,
) -> Any:
    """The snapshot features each entity row's customer had when it happened.

    ``entities``: a polars or pandas DataFrame, a pyarrow Table, or the path of a Parquet file
    (or folder, or glob) or a Delta table, with ``customer_id`` and ``timestamp_column``; every
    other column passes through untouched. Timestamps may carry any time zone; naive ones are
    taken as UTC (as ingest takes them), with a warning. ``lag`` defaults to the configured
    availability lag (RISK_AVAILABILITY_LAG_H).

    Returns the same rows in the same order, plus ``snapshot_as_of`` (the partition used; null
    before the first available one), ``customer_known`` and the features: a frame of the input's
    kind (polars for a path), or, when ``output`` is given (``*.parquet`` for a Parquet file,
    any other path for a Delta table), the result streamed there and ``Written``. ``progress``
    is called with the rows of each batch written.
    """
    feature_set = load_feature_set()
    wanted = resolve_features(feature_set, features)
    lakehouse = lakehouse or Lakehouse()
    lag = timedelta(hours=settings.load().availability_lag_h) if lag is None else lag
    with tempfile.TemporaryDirectory(prefix="featurestore-") as spill, duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        con.execute(f"set memory_limit = '{MEMORY_LIMIT}'; set temp_directory = '{spill}'")
        _load_entities(con, entities, timestamp_column, [c.name for c in wanted])
        first, last = con.sql(f"select min({_TS}), max({_TS}) from fs_entities").fetchall()[0]
        if first is None:  # no rows: the partitions do not matter
            first = last = datetime.now(UTC)
        sql = snapshot_join(
            con, lakehouse, "fs_entities", [c.name for c in wanted], lag, first, last, _TS
        )
        ordered = f"select * exclude ({_ROW}, {_TS}) from ({sql}) order by {_ROW}"
        reader = con.sql(ordered).fetch_record_batch(BATCH_ROWS)
        batches = (_as_served(batch, wanted) for batch in reader)
        if output is not None:
            return _write(batches, Path(output), progress)
        table = pa.Table.from_batches(
            list(_counted(batches, progress)), _result_schema(reader.schema, wanted)
        )
    return _like_input(table, entities)


def _load_entities(con, entities: Any, timestamp_column: str, features: list[str]) -> None:
    """``fs_entities``: the entity rows in DuckDB with their input position and their moment
    in UTC, after checking what the join needs."""
    source = _entity_source(entities)
    con.register("fs_input", source)
    schema = con.sql("describe select * from fs_input").fetchall()
    described = {name: kind for name, kind, *_ in schema if name != _ROW}
    for needed in ("customer_id", timestamp_column):
        if needed not in described:
            raise FeatureStoreError(
                f"the entity rows have no {needed!r} column"
                + (" (pass timestamp_column=...)" if needed == timestamp_column else "")
                + f"; they have: {', '.join(described)}"
            )
    clashes = [n for n in (*ADDED, *features, _TS) if n in described]
    if clashes:
        raise FeatureStoreError(
            f"the entity rows already have column(s) {', '.join(clashes)}, which the result "
            "adds: rename them first"
        )
    kind = described[timestamp_column].upper()
    if not kind.startswith("TIMESTAMP"):
        raise FeatureStoreError(
            f"{timestamp_column!r} must be a timestamp (a purchase's moment, to the "
            f"microsecond), not {kind}"
        )
    if "TIME ZONE" not in kind:
        warnings.warn(
            f"{timestamp_column!r} has no time zone: its values are taken as UTC",
            FeatureStoreWarning,
            stacklevel=3,
        )
    con.execute(
        f'create temp table fs_entities as select *, cast("{timestamp_column}" as timestamptz) '
        f"as {_TS} from fs_input"
    )
    con.unregister("fs_input")


def _entity_source(entities: Any) -> pa.RecordBatchReader | pa.Table:
    """The entity rows as Arrow, each with its position (``_ROW``) so the result keeps their
    order; files are read batch by batch."""
    if isinstance(entities, (str, Path)):
        path = Path(entities)
        if (path / "_delta_log").is_dir():
            dataset = DeltaTable(str(path)).to_pyarrow_dataset()
        elif path.exists() or any(ch in str(entities) for ch in "*?["):
            dataset = pads.dataset(str(entities) if not path.exists() else path, format="parquet")
        else:
            raise FeatureStoreError(f"{entities}: no such Parquet file, folder or Delta table")
        return _numbered(dataset.schema, dataset.to_batches())
    if isinstance(entities, pa.Table):
        table = entities
    elif hasattr(entities, "to_arrow"):  # polars
        table = entities.to_arrow()
    elif hasattr(entities, "to_records") and hasattr(entities, "columns"):  # pandas
        table = pa.Table.from_pandas(entities, preserve_index=False)
    else:
        raise FeatureStoreError(
            f"entities must be a polars or pandas DataFrame, a pyarrow Table or a path, "
            f"not {type(entities).__name__}"
        )
    return _numbered(table.schema, table.to_batches())


def _numbered(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> pa.RecordBatchReader:
    if _ROW in schema.names:
        raise FeatureStoreError(f"the entity rows have a column {_ROW}, which the join uses")
    out = schema.append(pa.field(_ROW, pa.int64()))

    def numbered():
        start = 0
        for batch in batches:
            rows = pa.array(range(start, start + batch.num_rows), pa.int64())
            start += batch.num_rows
            yield pa.RecordBatch.from_arrays([*batch.columns, rows], schema=out)

    return pa.RecordBatchReader.from_batches(out, numbered())


def _result_schema(schema: pa.Schema, wanted: list[FeatureColumn]) -> pa.Schema:
    numeric = {c.name for c in wanted if c.kind == "numeric"}
    return pa.schema([pa.field(f.name, pa.float32()) if f.name in numeric else f for f in schema])


def _as_served(batch: pa.RecordBatch, wanted: list[FeatureColumn]) -> pa.RecordBatch:
    """Numbers as the online store holds them: float32 (nearest), NaN for null."""
    schema = _result_schema(batch.schema, wanted)
    numeric = {c.name for c in wanted if c.kind == "numeric"}
    columns = [
        pc.fill_null(pc.cast(pc.cast(col, pa.float64()), pa.float32(), safe=False), float("nan"))
        if name in numeric
        else col
        for name, col in zip(batch.schema.names, batch.columns, strict=True)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _counted(batches, progress: Callable[[int], None] | None) -> Iterator[pa.RecordBatch]:
    """The batches, reported to ``progress``; at the end, a warning if any row came before
    the first available snapshot."""
    early = 0
    for batch in batches:
        early += batch.column("snapshot_as_of").null_count
        if progress is not None:
            progress(batch.num_rows)
        yield batch
    if early:
        warnings.warn(
            f"{early:,} entity row(s) come before the first available snapshot: their features "
            "are null and customer_known is false",
            FeatureStoreWarning,
            stacklevel=4,
        )


def _write(batches, path: Path, progress) -> Written:
    batches = _counted(batches, progress)
    first = next(batches, None)
    if first is None:
        raise FeatureStoreError("no entity rows: nothing to write")
    rows = first.num_rows
    if path.suffix == ".parquet":
        with pq.ParquetWriter(path, first.schema) as writer:
            writer.write_batch(first)
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
        return Written(str(path), rows, "parquet")
    counted = [rows]

    def all_batches():
        yield first
        for batch in batches:
            counted[0] += batch.num_rows
            yield batch

    reader = pa.RecordBatchReader.from_batches(first.schema, all_batches())
    write_deltalake(str(path), reader, mode="overwrite")
    return Written(str(path), counted[0], "delta")


def _like_input(table: pa.Table, entities: Any) -> Any:
    """The result as the kind of frame the entity rows came in (polars for a path)."""
    if isinstance(entities, pa.Table):
        return table
    if hasattr(entities, "to_records") and hasattr(entities, "columns"):  # pandas
        return table.to_pandas()
    import polars as pl

    return pl.from_arrow(table)
