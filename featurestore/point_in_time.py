"""The point-in-time join: each transaction with the snapshot serving had when it happened.

A snapshot partition (``as_of``) becomes usable at ``available_at = as_of + lag`` (the batch
window). A transaction at ``t`` gets the partition with the greatest ``available_at <= t``,
whichever customers it holds: a missing partition leaves the previous one in force (as online),
and a customer absent from the chosen partition gets no snapshot row, never an older one of
theirs. That is an ``ASOF JOIN`` on the partitions' ``available_at`` followed by an equality
join on customer, which DuckDB runs as written.

A snapshot whose online load ended later than ``as_of + lag`` became available when the load
ended (the online store serves the one before until then): ``featurestore/historical.py``
gives each partition's ``available_at`` as the later of the two, as serving did.
"""


def point_in_time_sql(
    snapshot_columns: list[str],
    transactions: str,
    snapshots: str,
    partitions: str,
    event_ts: str = "event_ts",
    key: str = "customer_id",
    prefix: str = "",
) -> str:
    """SQL over three relations: ``transactions`` (the entity ``key``, ``customer_id`` by
    default, and the moment, in the column named by ``event_ts``), ``snapshots`` (``key``,
    ``as_of``, the columns) and ``partitions`` (each ``as_of`` and its ``available_at``). Adds
    ``snapshot_as_of`` (null before the first available partition), ``customer_known`` and the
    snapshot columns; for another entity's snapshots (``prefix`` e.g. ``device_``) the added
    columns are ``device_snapshot_as_of``, ``device_known`` and ``device_<column>``."""
    picked = ", ".join(f"s.{c} as {prefix}{c}" for c in snapshot_columns)
    known = f"{prefix}known" if prefix else "customer_known"
    return f"""
        with chosen as (
            select t.*, p.as_of as {prefix}snapshot_as_of
            from {transactions} as t
            asof left join {partitions} as p on t.{event_ts} >= p.available_at
        )
        select c.*, s.{key} is not null as {known}, {picked}
        from chosen as c
        left join {snapshots} as s
            on s.as_of = c.{prefix}snapshot_as_of and s.{key} = c.{key}
    """
