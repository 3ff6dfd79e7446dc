"""Point-in-time features for any entity rows: the one road from (customer, moment) to the
snapshot features serving had at that moment. The training set takes it too
(``assets/training/dataset.py``), so a data scientist's frame and the model's rows agree.

The rules are the architecture's (docs/architecture.md, "Point in time"): a row at ``t`` gets
the snapshot partition with the greatest ``available_at <= t`` (``as_of + lag``, or when its
online load ended, if later), whichever customers it holds; a customer absent from that
partition gets nulls and ``customer_known`` false, never an older row of theirs; so does a row
before the first available snapshot. Numbers come back as the online store holds them
(float32, NaN for null), so a model trained on them sees what serving feeds it.

Only the keys (customer, moment, position) go into DuckDB; the join's columns come back in
input order, in record batches, and are attached to the untouched input rows: in memory for a
frame, batch by batch for a file, streamed to a Parquet file or Delta table.
"""

from __future__ import annotations

import difflib
import glob
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake

from featurestore.point_in_time import point_in_time_sql
from featurestore.registry import load_feature_set
from resources.lakehouse import (
    CUSTOMER_FEATURES,
    ENTITY_KEYS,
    KEYS,
    ONLINE_LOADS,
    SNAPSHOTS,
    Lakehouse,
)
from riskcore import settings
from riskcore.feature_set import FeatureColumn, FeatureSet
from riskcore.timestamps import as_of_time

ADDED = ("snapshot_as_of", "customer_known")  # the columns every result gains
_ROW, _TS = "__entity_row", "__entity_ts"  # internal: input position, the moment in UTC
BATCH_ROWS = 131_072
# A row this long after the newest snapshot became usable is warned about: a daily snapshot
# is missing after it (or the row's moment is wrong)
STALE_AFTER = timedelta(days=1)
MEMORY_LIMIT = "3GB"  # DuckDB spills the join past this, to a temporary folder


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
    names = [names] if isinstance(names, str) else [n.strip() for n in names]
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


def entity_features(
    feature_set: FeatureSet, names: Sequence[str] | None
) -> tuple[list[FeatureColumn], dict[str, list[FeatureColumn]]]:
    """The requested columns split by entity: the customer's (``resolve_features``), and each
    other entity's, named with its prefix (``device_distinct_customers_30d``: the device
    snapshot's ``distinct_customers_30d``; docs/architecture.md#entities)."""
    if names is None:
        return resolve_features(feature_set, None), {}
    names = [names] if isinstance(names, str) else [n.strip() for n in names]
    customer = {c.name for c in (*feature_set.features, *feature_set.context)}
    prefixed = [n for n in names if n not in customer and n.split("_")[0] in ENTITY_KEYS]
    by_entity: dict[str, list[FeatureColumn]] = {}
    for entity in dict.fromkeys(n.split("_")[0] for n in prefixed):
        columns = {c.name: c for c in load_feature_set(entity=entity).features}
        wanted = [n.removeprefix(f"{entity}_") for n in prefixed if n.startswith(f"{entity}_")]
        unknown = [n for n in wanted if n not in columns]
        if unknown:
            raise FeatureStoreError(
                f"unknown {entity} feature(s): {', '.join(unknown)}. Known: "
                + ", ".join(f"{entity}_{c}" for c in columns)
            )
        by_entity[entity] = [columns[n] for n in dict.fromkeys(wanted)]
    rest = [n for n in names if n not in prefixed]
    return (resolve_features(feature_set, rest) if rest else []), by_entity


def partition_availability(
    lakehouse: Lakehouse, lag: timedelta, table: str = CUSTOMER_FEATURES
) -> dict[date, datetime]:
    """When each snapshot partition of ``table`` became usable: ``as_of + lag``, or when its
    first online load ended if that was later (the ``serving/online_loads`` table, a row an
    as_of; every entity's snapshots of an as_of are built by the same daily run)."""
    planned = {d: as_of_time(d) + lag for d in lakehouse.partition_dates(table, "as_of_date")}
    loads = lakehouse.dataset(ONLINE_LOADS)
    if loads is not None:
        for row in loads.to_table(columns=["as_of", "available_at"]).to_pylist():
            day = row["as_of"].date()
            if day in planned and row["available_at"] is not None:
                planned[day] = max(planned[day], row["available_at"])
    return planned


def usable_partitions(
    available: dict[date, datetime], first: datetime, last: datetime
) -> list[date]:
    """The partitions a row between ``first`` and ``last`` can be joined with: the one in
    force at ``first`` (greatest availability not after it) and those becoming available
    after it, up to ``last``."""
    before = [d for d, at in available.items() if at <= first]
    in_force = max(before, key=lambda d: (available[d], d)) if before else None
    inside = [d for d, at in available.items() if first < at <= last]
    return sorted({*inside, *([in_force] if in_force else [])})


def snapshot_join(
    con: duckdb.DuckDBPyConnection,
    lakehouse: Lakehouse,
    entities: str,
    columns: Sequence[str],
    lag: timedelta,
    first: datetime,
    last: datetime,
    event_ts: str = "event_ts",
    entity: str = "customer",
    available: dict[date, datetime] | None = None,
) -> str:
    """Registers in ``con`` the snapshot partitions rows between ``first`` and ``last`` can
    use, and when each became available; returns the point-in-time SQL over the relation
    ``entities`` (``customer_id``, ``event_ts``, ...). What the SDK and the training set run.
    ``entity``: another entity's snapshots (``device``, ``merchant``, ``card``), joined on its
    key (``ENTITY_KEYS``), their columns prefixed with the entity's name. ``available``: the
    table's ``partition_availability``, when the caller has it already."""
    name, key = SNAPSHOTS[entity], KEYS[entity]
    prefix = "" if entity == "customer" else f"{entity}_"  # the customers' columns keep names
    table = lakehouse.table(name)
    if table is None:
        raise FeatureStoreError(
            f"no snapshot table at {lakehouse.uri(name)}: build one first "
            "(make demo, or the daily_features job), or point RISK_DATA_DIR at a data folder"
        )
    if available is None:
        available = partition_availability(lakehouse, lag, name)
    days = usable_partitions(available, first, last)
    utc = pa.timestamp("us", "UTC")
    partitions = pa.table(
        {
            "as_of": pa.array([as_of_time(d) for d in days], utc),
            "available_at": pa.array([available[d] for d in days], utc),
        }
    )
    con.register(f"fs_{prefix}partitions", partitions)
    # The table's current files of those partitions (its Delta log says which), read by
    # DuckDB's own Parquet reader: it knows their row counts, so it builds the join's hash
    # table on the entity rows and streams the snapshots past it (read through a pyarrow
    # dataset, it built it on 90M snapshot rows: 4x slower, 6x the memory).
    files = table.file_uris(file_pruning_predicate=[("as_of_date", "in", days)]) if days else []
    if files:
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        wanted = ", ".join([key, "as_of", *columns])
        con.execute(
            f"create temp view fs_{prefix}snapshots as select {wanted} "
            f"from read_parquet([{listed}], union_by_name = true)"
        )
    else:
        schema = table.to_pyarrow_dataset().schema  # no partition usable: no snapshot rows
        empty = pa.schema([schema.field(n) for n in [key, "as_of", *columns]])
        con.register(f"fs_{prefix}snapshots", empty.empty_table())
    return point_in_time_sql(
        list(columns),
        entities,
        f"fs_{prefix}snapshots",
        f"fs_{prefix}partitions",
        event_ts=event_ts,
        key=key,
        prefix=prefix,
    )


def historical_features(
    entities: Any,
    features: Sequence[str] | None = None,
    *,
    timestamp_column: str = "event_ts",
    lag: timedelta | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
    lakehouse: Lakehouse | None = None,
    progress: Callable[[int], None] | None = None,
) -> Any:
    """The snapshot features each entity row's customer had when it happened.

    ``entities``: a polars or pandas DataFrame, a pyarrow Table, or the path of a Parquet file
    (or folder, or glob) or a Delta table, with ``customer_id`` (text) and ``timestamp_column``;
    every other column passes through untouched (a pandas index too). ``features`` may name
    other entities' features by their prefix (``device_...``, ``merchant_...``, ``card_...``):
    the rows then need that entity's key (``device_id``, ``merchant_id``, ``card_hash``; null
    for none), and the result gains ``<entity>_known`` and the prefixed features, joined by the
    same point-in-time rule. Timestamps may carry any
    time zone; naive ones are taken as UTC (as ingest takes them), with a warning. ``lag``
    defaults to the configured availability lag (RISK_AVAILABILITY_LAG_H).

    Returns the same rows in the same order, plus ``snapshot_as_of`` (the partition used; null
    before the first available one), ``customer_known`` and the features: a frame of the input's
    kind (polars for a path), or, when ``output`` is given (``*.parquet`` for a Parquet file,
    any other path for a Delta table; an existing one only with ``overwrite``), the result
    streamed there and ``Written``. ``progress`` is called with the rows of each batch.
    """
    feature_set = load_feature_set()
    wanted, by_entity = entity_features(feature_set, features)
    lakehouse = lakehouse or Lakehouse()
    lag = timedelta(hours=settings.load().availability_lag_h) if lag is None else lag
    names = [c.name for c in wanted]
    added_names = [
        *names,
        *(n for e, cs in by_entity.items() for n in (f"{e}_known", *(f"{e}_{c.name}" for c in cs))),
    ]
    keys = [ENTITY_KEYS[e] for e in by_entity]
    source = _EntitySource.of(entities, timestamp_column, added_names, keys)
    if output is not None:
        source.check_output(Path(output), overwrite)
    # When each customer snapshot became usable: what the warnings below name
    available = partition_availability(lakehouse, lag)
    tally = {"rows": 0, "early": 0}
    with tempfile.TemporaryDirectory(prefix="featurestore-") as spill, duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        con.execute(f"set memory_limit = '{MEMORY_LIMIT}'; set temp_directory = '{spill}'")
        con.register("fs_keys", source.keys())
        con.execute(
            f"create temp table fs_entities as select {', '.join(['customer_id', *keys])}, "
            f'{_ROW}, cast("{timestamp_column}" as timestamptz) as {_TS} from fs_keys'
        )
        con.unregister("fs_keys")
        first, last, stale = con.sql(
            f"select min({_TS}), max({_TS}), count(*) filter (where {_TS} > $late) "
            "from fs_entities",
            params={"late": max(available.values()) + STALE_AFTER if available else None},
        ).fetchall()[0]
        first = first or datetime.now(UTC)  # no row has a moment: any span joins nothing
        sql = snapshot_join(
            con,
            lakehouse,
            "fs_entities",
            names,
            lag,
            first,
            last or first,
            _TS,
            available=available,
        )
        for entity, columns in by_entity.items():  # each entity's join over the one before
            sql = snapshot_join(
                con,
                lakehouse,
                f"({sql})",
                [c.name for c in columns],
                lag,
                first,
                last or first,
                _TS,
                entity=entity,
            )
        columns = ", ".join([*ADDED, *added_names])
        reader = con.sql(f"select {columns} from ({sql}) order by {_ROW}").to_arrow_reader(
            BATCH_ROWS
        )
        numeric = {c.name for c in wanted if c.kind == "numeric"} | {
            f"{e}_{c.name}" for e, cs in by_entity.items() for c in cs if c.kind == "numeric"
        }
        schema = _result_schema(reader.schema, numeric)
        added = _tallied((_as_served(b, schema) for b in reader), tally, progress)
        if output is not None:
            batches = source.attach_batches(added, schema)
            written_as = _write(batches, source.schema(schema), Path(output), overwrite)
            written = Written(str(output), tally["rows"], written_as)
        else:
            result = source.attach(pa.Table.from_batches(list(added), schema))
    source.warn(tally["early"], stale, available, stacklevel=2)
    return written if output is not None else result


class _EntitySource:
    """The entity rows: their keys for DuckDB, and how the join's columns attach to them."""

    def __init__(
        self,
        entities: Any,
        table: pa.Table | None,
        dataset: pads.Dataset | None,
        ts: str,
        keys: tuple[str, ...] = ("customer_id",),
    ):
        self.entities, self.table, self.dataset, self.ts = entities, table, dataset, ts
        self.keys_ = keys  # customer_id, then any other entity's key
        self.null_moments = 0

    @classmethod
    def of(
        cls, entities: Any, ts: str, features: list[str], entity_keys: Sequence[str] = ()
    ) -> _EntitySource:
        keys = ("customer_id", *entity_keys)
        if isinstance(entities, (str, Path)):
            source = cls(entities, None, _dataset(entities), ts, keys)
        elif isinstance(entities, pa.Table):
            source = cls(entities, entities, None, ts, keys)
        elif hasattr(entities, "columns") and (
            hasattr(entities, "hstack") or hasattr(entities, "to_records")
        ):  # polars or pandas: only the keys are converted
            present = [c for c in (*keys, ts) if c in entities.columns]
            table = (
                entities.select(present).to_arrow()
                if hasattr(entities, "hstack")
                else pa.Table.from_pandas(entities[present], preserve_index=False)
            )
            source = cls(entities, table, None, ts, keys)
        else:
            raise FeatureStoreError(
                "entities must be a polars or pandas DataFrame, a pyarrow Table or a path, "
                f"not {type(entities).__name__}"
            )
        source._check(features)
        return source

    def column_names(self) -> list[str]:
        if self.dataset is not None:
            return self.dataset.schema.names
        if isinstance(self.entities, pa.Table):
            return self.entities.schema.names
        return [str(c) for c in self.entities.columns]

    def _type(self, name: str) -> pa.DataType:
        if self.dataset is not None:
            return self.dataset.schema.field(name).type
        return self.table.schema.field(name).type

    def _check(self, features: list[str]) -> None:
        names = self.column_names()
        for needed in (*self.keys_, self.ts):
            if needed not in names:
                raise FeatureStoreError(
                    f"the entity rows have no {needed!r} column"
                    + (
                        " (pass timestamp_column=..., --timestamp-column on the command line)"
                        if needed == self.ts
                        else ""
                    )
                    + f"; they have: {', '.join(map(str, names))}"
                )
        clashes = [n for n in (*ADDED, *features, _ROW) if n in names]
        if clashes:
            raise FeatureStoreError(
                f"the entity rows already have column(s) {', '.join(clashes)}, which the result "
                "adds: rename them first"
            )
        for key in self.keys_:
            kind = self._type(key)
            if not (
                pa.types.is_string(kind)
                or pa.types.is_large_string(kind)
                or pa.types.is_string_view(kind)
                or (pa.types.is_null(kind) and key != "customer_id")  # no device at all
            ):
                raise FeatureStoreError(
                    f"{key} must be text (the snapshot's ids, e.g. 'cus_00000042'), not {kind}: "
                    "cast it"
                )
        kind = self._type(self.ts)
        if not pa.types.is_timestamp(kind):
            hint = (
                ": parse it first (polars: pl.col(...).str.to_datetime(); pandas: pd.to_datetime)"
                if pa.types.is_string(kind) or pa.types.is_large_string(kind)
                else ""
            )
            raise FeatureStoreError(
                f"{self.ts!r} must be a timestamp (a purchase's moment, to the microsecond), "
                f"not {kind}{hint}"
            )
        if kind.tz is None:
            warnings.warn(
                f"{self.ts!r} has no time zone: its values are taken as UTC",
                FeatureStoreWarning,
                stacklevel=4,
            )

    def _key_batches(self) -> Iterator[pa.RecordBatch]:
        columns = [*self.keys_, self.ts]
        if self.dataset is None:
            yield from self.table.select(columns).to_batches()
            return
        for fragment in self.dataset.get_fragments():  # in order, the same order each read
            yield from fragment.to_batches(schema=self.dataset.schema, columns=columns)

    def keys(self) -> pa.RecordBatchReader:
        """The keys (customer_id, any other entity's), the moment and each row's position,
        batch by batch."""
        schema = pa.schema(
            [
                *(pa.field(k, self._type(k)) for k in self.keys_),
                pa.field(self.ts, self._type(self.ts)),
                pa.field(_ROW, pa.int64()),
            ]
        )

        def numbered():
            start = 0
            for batch in self._key_batches():
                self.null_moments += batch.column(self.ts).null_count
                position = pa.array(np.arange(start, start + batch.num_rows, dtype=np.int64))
                start += batch.num_rows
                yield pa.RecordBatch.from_arrays([*batch.columns, position], schema=schema)

        return pa.RecordBatchReader.from_batches(schema, numbered())

    def schema(self, added: pa.Schema) -> pa.Schema:
        return pa.schema([*self.dataset.schema, *added])

    def attach(self, added: pa.Table) -> Any:
        """The input rows with the join's columns, as the kind of frame they came in."""
        if isinstance(self.entities, pa.Table):
            for field, column in zip(added.schema, added.columns, strict=True):
                self.entities = self.entities.append_column(field, column)
            return self.entities
        import polars as pl

        if self.dataset is not None:  # a path: polars
            return pl.from_arrow(self.dataset.to_table()).hstack(pl.from_arrow(added).get_columns())
        if hasattr(self.entities, "hstack"):
            return self.entities.hstack(pl.from_arrow(added).get_columns())
        import pandas as pd

        frame = added.to_pandas()
        frame.index = self.entities.index
        return pd.concat([self.entities, frame], axis=1)

    def attach_batches(
        self, added: Iterator[pa.RecordBatch], schema: pa.Schema
    ) -> Iterator[pa.RecordBatch]:
        """A file's rows, batch by batch, each with the join's rows for it."""
        pending = schema.empty_table()
        for fragment in self.dataset.get_fragments():
            for batch in fragment.to_batches(schema=self.dataset.schema):
                while pending.num_rows < batch.num_rows:
                    pending = pa.concat_tables(
                        [pending, pa.Table.from_batches([next(added)], schema)]
                    )
                take, pending = (
                    pending.slice(0, batch.num_rows).combine_chunks(),
                    pending.slice(batch.num_rows),
                )
                yield pa.RecordBatch.from_arrays(
                    [*batch.columns, *(c.combine_chunks() for c in take.columns)],
                    schema=self.schema(schema),
                )

    def check_output(self, output: Path, overwrite: bool) -> None:
        """Refuse an output that exists (unless ``overwrite``) or that is, holds or sits in
        the input: writing it would destroy the rows being read."""
        if self.dataset is not None:
            path = Path(self.entities)
            read = [path] if path.exists() else [Path(f) for f in glob.glob(str(path))]
            target = output.resolve()
            for place in (r.resolve() for r in read):
                if place == target or target in place.parents or place in target.parents:
                    raise FeatureStoreError(
                        f"{output} is where the entity rows are read from ({self.entities}): "
                        "write the result elsewhere"
                    )
        if output.exists() and not overwrite:
            raise FeatureStoreError(
                f"{output} exists: pass overwrite=True (--overwrite) to replace it"
            )

    def warn(
        self, early: int, stale: int, available: dict[date, datetime], stacklevel: int
    ) -> None:
        """What the caller should know about the rows' moments: none, before the first
        snapshot, or long after the newest (``available``: each snapshot's availability)."""
        missing = "their features are NaN (text: null)"
        if self.null_moments:
            warnings.warn(
                f"{self.null_moments:,} entity row(s) have no {self.ts!r}: {missing}",
                FeatureStoreWarning,
                stacklevel=stacklevel + 1,
            )
        if early - self.null_moments:
            first = min(available.items(), key=lambda d: d[1]) if available else None
            since = (
                f" (as_of {first[0]}, usable from {first[1]:%Y-%m-%d %H:%M} UTC)" if first else ""
            )
            warnings.warn(
                f"{early - self.null_moments:,} entity row(s) come before the first available "
                f"snapshot{since}: {missing} and customer_known is false",
                FeatureStoreWarning,
                stacklevel=stacklevel + 1,
            )
        if stale:
            newest = max(available.items(), key=lambda d: d[1])
            warnings.warn(
                f"{stale:,} entity row(s) come more than {STALE_AFTER.days} day(s) after the "
                f"newest snapshot became usable (as_of {newest[0]}, usable from "
                f"{newest[1]:%Y-%m-%d %H:%M} UTC): they get it, older than the daily job "
                "would have served (build the missing days, or check the rows' moments)",
                FeatureStoreWarning,
                stacklevel=stacklevel + 1,
            )


def _dataset(path: str | Path) -> pads.Dataset:
    """A Delta table, a Parquet file or folder, or a glob of Parquet files."""
    path = Path(path)
    if (path / "_delta_log").is_dir():
        return DeltaTable(str(path)).to_pyarrow_dataset()
    if path.exists():
        return pads.dataset(path, format="parquet")
    files = sorted(glob.glob(str(path)))
    if not files:
        raise FeatureStoreError(f"{path}: no such Parquet file, folder, glob or Delta table")
    return pads.dataset(files, format="parquet")


def _result_schema(schema: pa.Schema, numeric: set[str]) -> pa.Schema:
    return pa.schema([pa.field(f.name, pa.float32()) if f.name in numeric else f for f in schema])


def _as_served(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Numbers as the online store holds them: float32 (nearest), NaN for null."""
    columns = [
        pc.fill_null(pc.cast(pc.cast(col, pa.float64()), pa.float32(), safe=False), float("nan"))
        if field.type == pa.float32()
        else col
        for field, col in zip(schema, batch.columns, strict=True)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _tallied(
    batches, tally: dict, progress: Callable[[int], None] | None
) -> Iterator[pa.RecordBatch]:
    """The batches, counted (rows, rows with no snapshot) and reported to ``progress``."""
    for batch in batches:
        tally["rows"] += batch.num_rows
        tally["early"] += batch.column("snapshot_as_of").null_count
        if progress is not None:
            progress(batch.num_rows)
        yield batch


def _write(
    batches: Iterator[pa.RecordBatch], schema: pa.Schema, path: Path, overwrite: bool
) -> str:
    """Streams the batches to a Parquet file (``*.parquet``) or a Delta table; its format.
    A Parquet file is written beside its name and renamed when complete, so a failure leaves
    no half file and an overwritten file whole; a Delta write is one commit."""
    if path.suffix == ".parquet":
        partial = path.with_name(f".{path.name}.partial")
        try:
            with pq.ParquetWriter(partial, schema) as writer:
                for batch in batches:
                    writer.write_batch(batch)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        return "parquet"
    reader = pa.RecordBatchReader.from_batches(schema, batches)
    write_deltalake(str(path), reader, mode="overwrite" if overwrite else "error")
    return "delta"
