"""Export the snapshot partitions from DuckDB to the lakehouse's Delta tables: the customers',
and each other entity's (device, merchant, card)."""

from datetime import date, timedelta

import duckdb
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from assets.ingest.raw import partition_days
from assets.names import LAKEHOUSE, WAREHOUSE_POOL
from assets.partitions import daily_partitions, monthly_batches
from featurestore.registry import ENTITY_MARTS, MART, MARTS, load_feature_set
from resources.lakehouse import CUSTOMER_FEATURES, KEYS, SNAPSHOTS, Lakehouse
from riskcore import settings

_BATCH_ROWS = 200_000  # streamed to Delta in batches: memory stays flat at any customer count


def export_snapshots(
    lakehouse: Lakehouse,
    first: date,
    last: date,
    mart: str = MART,
    table: str = CUSTOMER_FEATURES,
    key: str = "customer_id",
) -> tuple[list, int]:
    """Replace the as_of_date partitions first..last of a Delta table (the customer
    snapshots' by default) with the mart's rows in DuckDB.

    One Delta commit: readers see the old partitions or the new ones, never a mix. Returns
    the rows per as_of_date and the new table version.
    """
    with duckdb.connect(str(settings.load().duckdb_path), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        counts = con.sql(
            f"select as_of_date, count(*) from main.{mart} "
            "where as_of_date between $1 and $2 group by 1 order by 1",
            params=[first, last],
        ).fetchall()
        reader = con.sql(
            f"select * from main.{mart} where as_of_date between $1 and $2 "
            f"order by as_of_date, {key}",
            params=[first, last],
        ).to_arrow_reader(_BATCH_ROWS)
        version = lakehouse.replace_partitions(
            table,
            reader,
            ["as_of_date"],
            f"as_of_date >= '{first}' AND as_of_date <= '{last}'",
        )
    return counts, version


@asset(
    key=["lakehouse", "customer_features_daily"],
    deps=[AssetKey(MART)],
    partitions_def=daily_partitions,
    backfill_policy=monthly_batches,
    group_name=LAKEHOUSE,
    pool=WAREHOUSE_POOL,
    kinds={"delta", "duckdb"},
    description="Point-in-time customer snapshots as a Delta table partitioned by as_of_date "
    "(= partition day + 1): what the online store, training and drift read.",
)
def customer_features_daily(
    context: AssetExecutionContext, lakehouse: Lakehouse
) -> MaterializeResult:
    feature_set = load_feature_set()
    metadata = _export(context, lakehouse, "customer")
    metadata |= {"feature_set_version": feature_set.version, "features": len(feature_set.features)}
    return MaterializeResult(metadata=metadata)


def _export(context: AssetExecutionContext, lakehouse: Lakehouse, entity: str) -> dict:
    """The run's partitions of ``entity``'s snapshots exported; what a materialization shows."""
    days = partition_days(context)
    first, last = days[0] + timedelta(days=1), days[-1] + timedelta(days=1)
    table = SNAPSHOTS[entity]
    counts, version = export_snapshots(lakehouse, first, last, MARTS[entity], table, KEYS[entity])
    rows = sum(n for _, n in counts)
    context.log.info(f"exported {rows} {entity} snapshot rows for as_of {first}..{last}")
    return {
        "rows": rows,
        f"{entity}s_per_snapshot": MetadataValue.md(
            f"| as_of_date | {entity}s |\n|---|---|\n"
            + "\n".join(f"| {d} | {n} |" for d, n in counts)
        ),
        "as_of_dates": f"{first} .. {last}",
        "table_uri": MetadataValue.path(lakehouse.uri(table)),
        "delta_version": version,
    }


def _entity_export(entity: str):
    @asset(
        name=f"{entity}_features_daily",
        key_prefix=["lakehouse"],
        deps=[AssetKey(MARTS[entity])],
        partitions_def=daily_partitions,
        backfill_policy=monthly_batches,
        group_name=LAKEHOUSE,
        pool=WAREHOUSE_POOL,
        kinds={"delta", "duckdb"},
        description=f"Point-in-time {entity} snapshots (by {KEYS[entity]}) as a Delta table "
        "partitioned by as_of_date (= partition day + 1).",
    )
    def export(context: AssetExecutionContext, lakehouse: Lakehouse) -> MaterializeResult:
        return MaterializeResult(metadata=_export(context, lakehouse, entity))

    return export


entity_features_daily = [_entity_export(entity) for entity in ENTITY_MARTS]
