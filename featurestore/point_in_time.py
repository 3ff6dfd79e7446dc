"""The point-in-time join: each transaction with the snapshot serving had when it happened.

A snapshot partition (``as_of``) becomes usable at ``available_at = as_of + lag`` (the batch
window). A transaction at ``t`` gets the partition with the greatest ``available_at <= t``,
whichever customers it holds: a missing partition leaves the previous one in force (as online),
and a customer absent from the chosen partition gets no snapshot row, never an older one of
theirs. That is an ``ASOF JOIN`` on the partitions' ``available_at`` followed by an equality
join on customer, which DuckDB runs as written.

A snapshot whose online load ended later than ``as_of + lag`` became available when the load
ended (the online store serves the one before until then): given the ``loads`` relation
(``as_of``, ``available_at``), the join uses the later of the two, as serving did.
"""

from datetime import timedelta


def point_in_time_sql(
    snapshot_columns: list[str],
    lag: timedelta,
    transactions: str = "transactions",
    snapshots: str = "snapshots",
    loads: str | None = None,
    event_ts: str = "event_ts",
) -> str:
    """SQL over two relations: ``transactions`` (``customer_id``, ``event_ts``: the column
    named so, ...) and
    ``snapshots`` (``customer_id``, ``as_of``, the columns), and optionally ``loads`` (when
    each ``as_of`` was loaded online, ``available_at``). Adds ``snapshot_as_of`` (null before
    the first usable partition), ``customer_known`` and the snapshot columns."""
    lag_us = int(lag.total_seconds() * 1_000_000)
    picked = ", ".join(f"s.{c}" for c in snapshot_columns)
    planned = f"p.as_of + to_microseconds({lag_us})"
    available = f"greatest({planned}, coalesce(l.available_at, {planned}))" if loads else planned
    loaded = f"left join {loads} as l on l.as_of = p.as_of" if loads else ""
    return f"""
        with partitions as (
            select p.as_of, {available} as available_at
            from (select distinct as_of from {snapshots}) as p {loaded}
        ),
        chosen as (
            select t.*, p.as_of as snapshot_as_of
            from {transactions} as t
            asof left join partitions as p on t.{event_ts} >= p.available_at
        )
        select c.*, s.customer_id is not null as customer_known, {picked}
        from chosen as c
        left join {snapshots} as s
            on s.as_of = c.snapshot_as_of and s.customer_id = c.customer_id
    """
