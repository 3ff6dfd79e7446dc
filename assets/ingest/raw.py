"""Ingest assets: validated raw transactions and labels as day-partitioned Delta tables."""

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta

import pyarrow as pa
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.ingest.contract import (
    LABELS_PARTITION,
    LABELS_SCHEMA,
    QUARANTINE_SCHEMA,
    TRANSACTIONS_PARTITION,
    TRANSACTIONS_SCHEMA,
)
from assets.ingest.sources import RawSources, RejectedRows, UnreadableFile
from assets.ingest.validate import stored_ids, validate_labels, validate_transactions
from assets.names import INGEST, WAREHOUSE_POOL
from assets.partitions import daily_partitions, monthly_batches
from resources.lakehouse import LABELS, QUARANTINE, TRANSACTIONS, Lakehouse
from riskcore import settings

# source table -> (Delta table, partition column, schema)
_TABLES = {
    "transactions": (TRANSACTIONS, TRANSACTIONS_PARTITION, TRANSACTIONS_SCHEMA),
    "labels": (LABELS, LABELS_PARTITION, LABELS_SCHEMA),
}


def partition_days(context: AssetExecutionContext) -> list[date]:
    """The UTC days of the run's partition range (one day, or a backfill batch)."""
    window = context.partition_time_window
    first, end = window.start.date(), window.end.date()
    return [first + timedelta(days=i) for i in range((end - first).days)]


def run_as_of_date(context: AssetExecutionContext) -> date:
    """The as_of of the snapshot of the run's newest partition (its last day + 1)."""
    return partition_days(context)[-1] + timedelta(days=1)


@dataclass
class IngestReport:
    rows: int = 0
    quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)
    version: int = -1

    def add(self, other: "IngestReport") -> None:
        self.rows += other.rows
        self.quarantined += other.quarantined
        self.reasons.update(other.reasons)
        self.version = other.version

    def metadata(self, lakehouse: Lakehouse, table: str, days: list[date]) -> dict:
        reasons = "\n".join(f"| {r} | {n} |" for r, n in self.reasons.most_common(20))
        return {
            "rows": self.rows,
            "quarantined_rows": self.quarantined,
            "days": f"{days[0]} .. {days[-1]}" if len(days) > 1 else str(days[0]),
            "table_uri": MetadataValue.path(lakehouse.uri(table)),
            "quarantine_uri": MetadataValue.path(lakehouse.uri(QUARANTINE)),
            "delta_version": self.version,
            "quarantine_reasons": MetadataValue.md(
                f"| reason | rows |\n|---|---|\n{reasons}" if reasons else "none"
            ),
        }


def _unreadable(table: str, day: date, source: str, exc: UnreadableFile) -> pa.Table:
    row = {
        "source_table": table,
        "partition_date": day,
        "source": source,
        "row_number": -1,
        "reason": str(exc),
        "row_json": json.dumps({"file": source}),
    }
    return pa.Table.from_pylist([row], QUARANTINE_SCHEMA)


def _rejected(table: str, day: date, source: str, rejected: RejectedRows) -> pa.Table:
    rows = [
        {
            "source_table": table,
            "partition_date": day,
            "source": source,
            "row_number": -1,  # not a row of the file's table: the line (or record) is kept
            "reason": reason,
            "row_json": json.dumps(kept),
        }
        for reason, kept in rejected.rows
    ]
    return pa.Table.from_pylist(rows, QUARANTINE_SCHEMA)


def ingest_day(table: str, day: date, sources: RawSources, lakehouse: Lakehouse) -> IngestReport:
    """Validate every source's rows for ``day`` and replace that day in the raw and quarantine
    tables. Re-running gives the same tables; a bad row or file never stops the others."""
    good: list[pa.Table] = []
    bad: list[pa.Table] = []
    batches = list(sources.batches(table, day))
    stored = None  # the day's ids already stored on nearby days: one scan of those days
    if table == "transactions":
        window = lakehouse.near_day(  # bounded: its cost does not grow with history
            TRANSACTIONS, TRANSACTIONS_PARTITION, day, settings.load().duplicate_window_days
        )
        stored = stored_ids(window, [rows for _, rows in batches if isinstance(rows, pa.Table)])
    for source, rows in batches:
        if isinstance(rows, UnreadableFile):
            bad.append(_unreadable(table, day, source, rows))
            continue
        if isinstance(rows, RejectedRows):
            bad.append(_rejected(table, day, source, rows))
            continue
        if table == "transactions":
            # stored days and earlier sources of this day
            checked = validate_transactions(rows, day, source, known=[stored, *good])
        else:
            checked = validate_labels(rows, day, source)
        good.append(checked.good)
        bad.append(checked.quarantined)
    target, column, schema = _TABLES[table]
    rows = pa.concat_tables(good) if good else schema.empty_table()
    quarantined = pa.concat_tables(bad) if bad else QUARANTINE_SCHEMA.empty_table()
    # Quarantine first: if the raw write then fails, the rerun rewrites both.
    lakehouse.replace_partitions(
        QUARANTINE,
        quarantined,
        ["source_table", "partition_date"],
        f"source_table = '{table}' AND partition_date = '{day.isoformat()}'",
    )
    version = lakehouse.replace_day(target, rows, column, day)
    reasons = Counter(quarantined["reason"].to_pylist())
    return IngestReport(rows.num_rows, quarantined.num_rows, reasons, version)


def _ingest(context: AssetExecutionContext, table: str, sources: RawSources, lakehouse: Lakehouse):
    days = partition_days(context)
    report = IngestReport()
    for day in days:
        day_report = ingest_day(table, day, sources, lakehouse)
        context.log.info(
            f"{table} {day}: {day_report.rows} rows, {day_report.quarantined} quarantined"
        )
        report.add(day_report)
    return MaterializeResult(metadata=report.metadata(lakehouse, _TABLES[table][0], days))


def _raw_asset(table: str, description: str):
    @asset(
        key=["raw", table],
        partitions_def=daily_partitions,
        backfill_policy=monthly_batches,
        group_name=INGEST,
        pool=WAREHOUSE_POOL,
        kinds={"delta", "python"},
        description=description,
    )
    def _raw(
        context: AssetExecutionContext, raw_sources: RawSources, lakehouse: Lakehouse
    ) -> MaterializeResult:
        return _ingest(context, table, raw_sources, lakehouse)

    return _raw


raw_transactions = _raw_asset(
    "transactions",
    "Validated purchases, one Delta partition per UTC day (event_date); bad rows go to "
    "raw/quarantine with their reasons.",
)
raw_labels = _raw_asset(
    "labels",
    "Fraud chargebacks and BNPL defaults, partitioned by the UTC day they became known "
    "(label_date); they arrive days to months after the purchase.",
)
