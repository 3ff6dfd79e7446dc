"""Catch-up: the gaps among the due days are found by data time and built oldest first, a
month per run; nothing is requested while a daily run is in flight or when there is no gap."""

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
from dagster import DagsterInstance, RunRequest, SkipReason, build_sensor_context
from deltalake import write_deltalake

from assets.partitions import (
    PARTITION_RANGE_END,
    PARTITION_RANGE_START,
    last_due_day,
    missing_ranges,
)
from resources.lakehouse import CUSTOMER_FEATURES, Lakehouse
from sensors.catch_up import catch_up

FIRST = date(2026, 1, 1)  # RISK_START_DATE in tests (conftest)


def _built(lakehouse: Lakehouse, days: list[date]) -> None:
    """A snapshot table (partitioned by as_of_date, as the export writes it) of these days."""
    as_of = [d + timedelta(days=1) for d in days]
    table = pa.table({"customer_id": [f"c{i}" for i in range(len(as_of))], "as_of_date": as_of})
    write_deltalake(
        lakehouse.uri(CUSTOMER_FEATURES), table, mode="overwrite", partition_by=["as_of_date"]
    )


def test_missing_ranges_are_the_gaps_in_order_at_most_a_month_each(tmp_path):
    lakehouse = Lakehouse(root_uri=str(tmp_path / "lake"))
    days = [FIRST + timedelta(days=i) for i in range(80)]
    built = days[:10] + days[15:20] + days[70:75]
    _built(lakehouse, built)
    assert missing_ranges(lakehouse, days[-1]) == [
        (days[10], days[14]),
        (days[20], days[50]),  # 31 days: a month per run
        (days[51], days[69]),
        (days[75], days[79]),
    ]
    _built(lakehouse, days)
    assert missing_ranges(lakehouse, days[-1]) == []


def test_the_due_day_waits_for_the_schedule():
    # Partition D is built at D + 1 02:00 UTC; catch-up gives the schedule an hour first.
    assert last_due_day(datetime(2026, 3, 10, 2, 30, tzinfo=UTC)) == date(2026, 3, 8)
    assert last_due_day(datetime(2026, 3, 10, 3, 30, tzinfo=UTC)) == date(2026, 3, 9)


def test_the_sensor_requests_the_oldest_gap_and_then_nothing(tmp_path):
    lakehouse = Lakehouse(root_uri=str(tmp_path / "lake"))
    due = last_due_day(datetime.now(UTC))
    days = [FIRST + timedelta(days=i) for i in range((due - FIRST).days + 1)]
    _built(lakehouse, [d for d in days if d.day != 3])  # the 3rd of every month is missing
    with DagsterInstance.ephemeral() as instance:
        request = catch_up(
            build_sensor_context(instance=instance, resources={"lakehouse": lakehouse})
        )
        assert isinstance(request, RunRequest)
        assert request.tags[PARTITION_RANGE_START] == request.tags[PARTITION_RANGE_END]
        assert request.tags[PARTITION_RANGE_START] == "2026-01-03"
        _built(lakehouse, days)
        skipped = catch_up(
            build_sensor_context(instance=instance, resources={"lakehouse": lakehouse})
        )
        assert isinstance(skipped, SkipReason) and "no gap" in skipped.skip_message
