"""The lakehouse: Delta tables under one root URI (a local folder or any deltalake URI)."""

from __future__ import annotations

from datetime import date, timedelta

import pyarrow as pa
import pyarrow.dataset as pads
from dagster import ConfigurableResource
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import TableNotFoundError

from riskcore import settings
from riskcore.feature_set import ENTITY_KEYS, KEYS  # noqa: F401 (the tables' keys, re-exported)

TRANSACTIONS = "raw/transactions"
LABELS = "raw/labels"
QUARANTINE = "raw/quarantine"
CUSTOMER_FEATURES = "features/customer_features_daily"
# Every entity's snapshot table and key: the customers', and the others'
# (docs/architecture.md#entities)
SNAPSHOTS = {
    "customer": CUSTOMER_FEATURES,
    "device": "features/device_features_daily",
    "merchant": "features/merchant_features_daily",
    "card": "features/card_features_daily",
}
ENTITY_FEATURES = {e: table for e, table in SNAPSHOTS.items() if e != "customer"}
TRAINING_SET = "training/training_set"
REALIZED_PERFORMANCE = "monitoring/realized_performance"
# When each snapshot became available online (as_of + lag, or later when its load ended later):
# written by the first load of an as_of, read by the training join.
ONLINE_LOADS = "serving/online_loads"

# Row groups of 128k rows: readers stream a table a row group at a time (the online store's
# load of 1M customers stays under 1 GB), and statistics prune at that grain.
_WRITER = WriterProperties(max_row_group_size=131_072)


class Lakehouse(ConfigurableResource):
    """Reads and idempotently writes the project's Delta tables."""

    root_uri: str = ""

    @property
    def root(self) -> str:
        return (self.root_uri or settings.load().lakehouse_uri).rstrip("/")

    def uri(self, table: str) -> str:
        return f"{self.root}/{table}"

    def table(self, table: str) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri(table))
        except TableNotFoundError:
            return None

    def dataset(self, table: str, partitions: list | None = None) -> pads.Dataset | None:
        """A lazy scan: DuckDB and pyarrow push column and partition filters into it.
        ``partitions`` (deltalake's filters on partition columns, e.g. ``[("event_date", ">=",
        "2026-01-01")]``) keeps only those partitions' files: otherwise the dataset lists every
        file of the table's history."""
        dt = self.table(table)
        return dt.to_pyarrow_dataset(file_pruning_predicate=partitions) if dt is not None else None

    def partition_dates(self, table: str, column: str) -> list[date]:
        """The dates of a table's ``column`` partitions, sorted (none for a missing table)."""
        dt = self.table(table)
        if dt is None:
            return []
        return sorted(
            {date.fromisoformat(v) for p in dt.partitions() for k, v in p.items() if k == column}
        )

    def replace_partitions(
        self, table: str, data: pa.Table, partition_by: list[str], predicate: str
    ) -> int:
        """Replace exactly the rows matching ``predicate`` with ``data``; returns the version.

        One Delta commit: readers see the old partition or the new one, never a mix, and
        re-running with the same data gives the same table contents.
        """
        write_deltalake(
            self.uri(table),
            data,
            mode="overwrite",
            predicate=predicate,
            partition_by=partition_by,
            schema_mode="merge",
            writer_properties=_WRITER,
        )
        return DeltaTable(self.uri(table)).version()

    def overwrite(self, table: str, data: pa.Table, commit_metadata: dict[str, str]) -> int:
        """Replace the whole table in one commit that carries ``commit_metadata``."""
        write_deltalake(
            self.uri(table),
            data,
            mode="overwrite",
            schema_mode="overwrite",
            writer_properties=_WRITER,
            commit_properties=CommitProperties(custom_metadata=commit_metadata),
        )
        return DeltaTable(self.uri(table)).version()

    def last_commit(self, table: str) -> dict:
        """The newest commit's information, custom metadata included."""
        return DeltaTable(self.uri(table)).history(1)[0]

    def replace_day(self, table: str, data: pa.Table, column: str, day: date) -> int:
        """``data`` gets the partition column ``column`` = ``day`` and replaces that day."""
        data = data.append_column(column, pa.array([day] * data.num_rows, pa.date32()))
        return self.replace_partitions(table, data, [column], f"{column} = '{day.isoformat()}'")

    def near_day(
        self, table: str, day_column: str, day: date, within_days: int
    ) -> pads.Dataset | None:
        """The partitions within ``within_days`` of ``day`` on either side, but not ``day``
        itself (e.g. the ids already stored on other days), as a lazy scan: only those
        partitions' files are listed, whatever the table's history, and a reader streams them
        (``day_column`` is the table's partition column)."""
        near = [
            (day_column, ">=", (day - timedelta(days=within_days)).isoformat()),
            (day_column, "<=", (day + timedelta(days=within_days)).isoformat()),
            (day_column, "!=", day.isoformat()),
        ]
        return self.dataset(table, partitions=near)
