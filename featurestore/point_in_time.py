"""The point-in-time join: each transaction with the snapshot serving had when it happened.

A snapshot partition (``as_of``) becomes usable at ``available_at = as_of + lag`` (the batch
window). A transaction at ``t`` gets the partition with the greatest ``available_at <= t``,
whichever customers it holds: a missing partition leaves the previous one in force (as online),
and a customer absent from the chosen partition gets no snapshot row, never an older one of
theirs. That is an ``ASOF JOIN`` on the partitions' ``available_at`` followed by an equality
join on customer.

The equality join runs partition by partition: each partition's rows meet only the
transactions that chose it, so each hash table holds a partition's share of the transactions
(~11k of 1M over 90 days: it stays in cache) instead of all of them keyed by (as_of, customer).
Where a partition's files carry the key's integer digest (``resources/lakehouse.py``,
``JOIN_KEY``) the join matches on it, else on the text key: together ~2x faster on 90M
snapshot rows (docs/benchmarks.md#sdk).

A snapshot whose online load ended later than ``as_of + lag`` became available when the load
ended (the online store serves the one before until then): ``featurestore/historical.py``
gives each partition's ``available_at`` as the later of the two, as serving did.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from resources.lakehouse import JOIN_KEY, join_key_sql


@dataclass(frozen=True)
class Partition:
    """One snapshot partition: its ``as_of``, the SQL relation of its rows (the key, the
    columns, and ``JOIN_KEY`` when ``keyed``)."""

    as_of: datetime
    relation: str
    keyed: bool


def point_in_time_sql(
    snapshot_columns: list[str],
    transactions: str,
    partitions: str,
    snapshots: Sequence[Partition],
    empty: str,
    event_ts: str = "event_ts",
    key: str = "customer_id",
    prefix: str = "",
) -> str:
    """SQL over ``transactions`` (the entity ``key``, ``customer_id`` by default, and the
    moment, in the column named by ``event_ts``), ``partitions`` (each ``as_of`` and its
    ``available_at``), the rows of each of those partitions (``snapshots``, one per row of
    ``partitions``) and ``empty``, a relation with the snapshots' columns and no rows (the
    types of a row that matched no partition). Adds ``snapshot_as_of`` (null before the first
    available partition), ``customer_known`` and the snapshot columns; for another entity's
    snapshots (``prefix`` e.g. ``device_``) the added columns are ``device_snapshot_as_of``,
    ``device_known`` and ``device_<column>``. Rows come back in no particular order."""
    picked = ", ".join(f"s.{c} as {prefix}{c}" for c in snapshot_columns)
    known = f"{prefix}known" if prefix else "customer_known"
    chosen_as_of = f"{prefix}snapshot_as_of"
    digest = f"__{prefix}join_key"  # the transaction's key's digest, dropped from the output
    branches = [
        f"""
        select c.* exclude ({digest}), s.{key} is not null as {known}, {picked}
        from (select * from chosen where {chosen_as_of} = '{p.as_of.isoformat()}') as c
        left join {p.relation} as s on """
        + (f"s.{JOIN_KEY} = c.{digest}" if p.keyed else f"s.{key} = c.{key}")
        for p in snapshots
    ]
    branches.append(  # before the first available partition: nothing to join
        f"""
        select c.* exclude ({digest}), false as {known}, {picked}
        from (select * from chosen where {chosen_as_of} is null) as c
        left join {empty} as s on s.{key} = c.{key}"""
    )
    return f"""
        with chosen as materialized (
            select t.*, p.as_of as {chosen_as_of}, {join_key_sql(f"t.{key}")} as {digest}
            from {transactions} as t
            asof left join {partitions} as p on t.{event_ts} >= p.available_at
        )
        {" union all ".join(branches)}
    """
