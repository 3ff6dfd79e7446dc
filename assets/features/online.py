"""The online store's asset: the newest snapshot, loaded into Redis as a new generation."""

import queue
import threading
from collections.abc import Callable, Iterator
from datetime import date, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.features.export import customer_features_daily, entity_features_daily
from assets.ingest.raw import run_as_of_date
from assets.names import ONLINE_STORE, WAREHOUSE_POOL
from assets.partitions import daily_partitions, monthly_batches
from featurestore.registry import load_feature_set
from resources.lakehouse import (
    CUSTOMER_FEATURES,
    ENTITY_FEATURES,
    KEYS,
    ONLINE_LOADS,
    SNAPSHOTS,
    Lakehouse,
)
from resources.online_store import OnlineStoreResource
from riskcore import settings
from riskcore.feature_set import FeatureSet
from riskcore.online_store import MaterializationReport, OnlineStore, OnlineStoreError
from riskcore.timestamps import as_of_time


def snapshot_query(feature_set: FeatureSet, source: str = "batch", key: str = "customer_id") -> str:
    """The columns the store needs from snapshot rows, with the SHA-256 digests of the ids
    (``key``: another entity's, for its snapshots) the codec places and fingerprints by
    (DuckDB computes them ~2x faster than a Python loop)."""
    columns = [
        f"list_transform({c.name}, lambda x: unhex(sha256(x))) as {c.name}"
        if c.kind == "text_list"
        else c.name
        for c in feature_set.features + feature_set.context
    ]
    return (
        f"select {', '.join(columns)}, as_of, unhex(sha256({key})) as customer_digest from {source}"
    )


def snapshot_batches(
    dataset: pads.Dataset, feature_set: FeatureSet, as_of_date: date, key: str = "customer_id"
) -> Iterator[pa.Table]:
    """One snapshot partition, a Parquet row group at a time (~128k rows: the lakehouse
    writes them so), so memory stays flat at any customer count."""
    query = snapshot_query(feature_set, key=key)
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        for fragment in dataset.get_fragments(filter=pc.field("as_of_date") == as_of_date):
            for row_group in fragment.split_by_row_group():
                con.register("batch", row_group.to_table())
                yield con.sql(query).to_arrow_table()
                pa.default_memory_pool().release_unused()  # the pool would keep every batch


def newest_as_of_date(lakehouse: Lakehouse) -> date | None:
    days = lakehouse.partition_dates(CUSTOMER_FEATURES, "as_of_date")
    return days[-1] if days else None


def load_snapshot(
    lakehouse: Lakehouse,
    store: OnlineStore,
    feature_set: FeatureSet,
    as_of_date: date,
    *,
    min_customer_ratio: float = 0.5,
    log: Callable[[str], None] = print,
    entity: str = "customer",
) -> MaterializationReport:
    """Write the Delta snapshot of ``as_of_date`` as the store's next generation (another
    entity's: its own table, keyed by its own ids, in the store of its feature set)."""
    table, key = SNAPSHOTS[entity], KEYS[entity]
    dataset = lakehouse.dataset(table)
    if dataset is None:
        raise Failure(f"no snapshot table at {lakehouse.uri(table)}")
    customers = dataset.count_rows(filter=pc.field("as_of_date") == as_of_date)
    if customers == 0:
        raise Failure(f"the snapshot as_of {as_of_date} has no rows: nothing to serve")
    previous = store.current_generation(fresh=True)
    if previous and previous.as_of.date() <= as_of_date:
        if customers < min_customer_ratio * previous.customers:
            raise Failure(
                f"the snapshot as_of {as_of_date} has {customers} customers, fewer than "
                f"{min_customer_ratio:.0%} of the {previous.customers} serving now: refused "
                f"(generation {previous.id} keeps serving)"
            )
    as_of = as_of_time(as_of_date)
    report = store.write_generation(
        _progress(snapshot_batches(dataset, feature_set, as_of_date, key), customers, log),
        feature_set=feature_set,
        as_of=as_of,
        customers=customers,
        # Readers keep the previous snapshot until training says this one is there.
        available_at=as_of + timedelta(hours=settings.load().availability_lag_h),
        log=log,
    )
    if not report.skipped and entity == "customer":
        record_first_load(lakehouse, as_of_date, report)
    return report


def record_first_load(lakehouse: Lakehouse, as_of_date: date, report: MaterializationReport):
    """When this as_of became available online, for the training join: its first load only
    (a refill after Redis lost its data serves it again, later, but it was there before)."""
    if as_of_date in lakehouse.partition_dates(ONLINE_LOADS, "as_of_date"):
        return
    timestamp = pa.timestamp("us", "UTC")
    row = pa.table(
        {
            "as_of": pa.array([report.as_of], timestamp),
            "available_at": pa.array([report.available_at or report.as_of], timestamp),
        }
    )
    lakehouse.replace_day(ONLINE_LOADS, row, "as_of_date", as_of_date)


def _progress(reader: Iterator[pa.Table], total: int, log) -> Iterator[pa.Table]:
    """The reader's batches, read ahead by a thread (the next batch is scanned and hashed
    while the store encodes this one), with a progress line every million customers."""
    batches: queue.Queue = queue.Queue(maxsize=1)

    def read() -> None:
        try:
            for batch in reader:
                batches.put(batch)
        except BaseException as exc:
            batches.put(exc)
        batches.put(None)

    threading.Thread(target=read, daemon=True, name="snapshot-reader").start()
    done = 0
    while (batch := batches.get()) is not None:
        if isinstance(batch, BaseException):
            raise batch
        yield batch
        done += batch.num_rows
        if done % 1_000_000 < batch.num_rows or done == total:
            log(f"online store: {done:,}/{total:,} customers encoded")


class OnlineLoadConfig(Config):
    min_customer_ratio: float = 0.5  # a snapshot that lost half its customers is not served


@asset(
    deps=[customer_features_daily],
    partitions_def=daily_partitions,
    backfill_policy=monthly_batches,
    group_name=ONLINE_STORE,
    pool=WAREHOUSE_POOL,
    kinds={"redis"},
    description="The newest snapshot of the run's partitions in Redis, as a new generation "
    "behind one pointer: readers switch when every record is written. An older snapshot "
    "(a backfill) is not loaded; the pointer never moves back.",
)
def online_customer_features(
    context: AssetExecutionContext,
    config: OnlineLoadConfig,
    lakehouse: Lakehouse,
    online_store: OnlineStoreResource,
) -> MaterializeResult:
    report, store = _load(context, config, lakehouse, online_store)
    return MaterializeResult(metadata=report_metadata(report, store))


@asset(
    deps=entity_features_daily,
    partitions_def=daily_partitions,
    backfill_policy=monthly_batches,
    group_name=ONLINE_STORE,
    pool=WAREHOUSE_POOL,
    kinds={"redis"},
    description="The newest device, merchant and card snapshots in Redis, each in its own "
    "generations (its feature set's keys) under the customers' pointer rules. Not read by "
    "serving yet (docs/architecture.md#entities).",
)
def online_entity_features(
    context: AssetExecutionContext,
    config: OnlineLoadConfig,
    lakehouse: Lakehouse,
    online_store: OnlineStoreResource,
) -> MaterializeResult:
    metadata: dict = {}
    for entity in ENTITY_FEATURES:
        report, store = _load(context, config, lakehouse, online_store, entity)
        # A device's record is not a customer's: the same figures, named for any entity
        named = {
            k.replace("customer", "record"): v for k, v in report_metadata(report, store).items()
        }
        metadata |= {f"{entity}.{k}": v for k, v in named.items()}
    return MaterializeResult(metadata=metadata)


def _load(
    context: AssetExecutionContext,
    config: OnlineLoadConfig,
    lakehouse: Lakehouse,
    online_store: OnlineStoreResource,
    entity: str = "customer",
) -> tuple[MaterializationReport, OnlineStore]:
    """The run's newest snapshot of ``entity`` loaded into its feature set's store, with what
    the load found logged (another entity's messages say which)."""
    feature_set = load_feature_set(entity=entity)
    store = online_store.store(feature_set.version)
    which = "" if entity == "customer" else f"{entity}s: "
    try:
        report = load_snapshot(
            lakehouse,
            store,
            feature_set,
            run_as_of_date(context),
            min_customer_ratio=config.min_customer_ratio,
            log=context.log.info,
            entity=entity,
        )
    except OnlineStoreError as exc:  # the message says what failed and what keeps serving
        raise Failure(f"{which}{exc}") from exc
    for warning in report.warnings:
        context.log.warning(f"{which}{warning}")
    if report.stray_generations:
        context.log.warning(
            f"{which}removed partial generations {report.stray_generations} left by loads that died"
        )
    return report, store


def report_metadata(report: MaterializationReport, store: OnlineStore) -> dict:
    previous = report.previous
    metadata = {
        "as_of": report.as_of.date().isoformat(),
        "feature_set_version": store.version,
        "redis": store.where,
        "previous_generation": previous.id if previous else None,
        "stray_generations_removed": ", ".join(map(str, report.stray_generations)) or "none",
        "warnings": MetadataValue.md("\n".join(f"- {w}" for w in report.warnings) or "none"),
    }
    if report.skipped:
        return {**metadata, "skipped": report.skipped}
    return {
        **metadata,
        "generation": report.generation,
        "customers": report.customers,
        "keys_written": report.buckets,
        "record_bytes": report.bytes,
        "redis_memory_delta_bytes": report.redis_memory_delta,
        "bytes_per_customer": (report.redis_memory_delta or 0) / max(report.customers, 1),
        "duration_s": round(report.seconds, 2),
        "customers_per_s": round(report.customers_per_second),
        "ttl_s": store.ttl_s,
        "available_at": report.available_at.isoformat() if report.available_at else "at once",
        "loaded_late_s": round(report.late_s, 1),
    }


@asset_check(
    asset=online_customer_features,
    description="The store serves the newest Delta snapshot: the pointer exists (a Redis that "
    "restarted empty has none), names that as_of, and is not past its TTL.",
)
def online_store_serves_newest_snapshot(
    lakehouse: Lakehouse, online_store: OnlineStoreResource
) -> AssetCheckResult:
    feature_set = load_feature_set()
    newest = newest_as_of_date(lakehouse)
    try:
        generation = online_store.store(feature_set.version).current_generation(fresh=True)
    except OnlineStoreError as exc:
        return AssetCheckResult(passed=False, description=str(exc))
    metadata = {"newest_snapshot": str(newest), "feature_set_version": feature_set.version}
    if generation is None:
        return AssetCheckResult(
            passed=False,
            metadata=metadata,
            description="no generation is serving (Redis restarted empty?): the refill sensor "
            "loads the newest snapshot",
        )
    metadata |= {
        "generation": generation.id,
        "serving_as_of": generation.as_of.date().isoformat(),
        "written_at": generation.written_at.isoformat(),
        "expires_at": generation.expires_at.isoformat(),
    }
    behind = newest is not None and generation.as_of.date() < newest
    return AssetCheckResult(
        passed=not behind and not generation.expired,
        severity=AssetCheckSeverity.ERROR if generation.expired else AssetCheckSeverity.WARN,
        metadata=metadata,
    )
