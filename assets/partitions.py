"""Daily partitions: key D is the last UTC day of data (snapshot rows carry as_of = D + 1 day)."""

from datetime import date, datetime, timedelta

from dagster import BackfillPolicy, DailyPartitionsDefinition

from resources.lakehouse import CUSTOMER_FEATURES, Lakehouse
from riskcore import settings

daily_partitions = DailyPartitionsDefinition(
    start_date=settings.load().first_day().isoformat(), timezone="UTC"
)

# A backfill runs ranges of up to a month per run: one dbt start-up and one Delta commit per
# table instead of one per day, with memory still bounded.
monthly_batches = BackfillPolicy.multi_run(max_partitions_per_run=31)


# Dagster's documented run tags for one run over a range of partitions (a single-run backfill).
PARTITION_RANGE_START = "dagster/asset_partition_range_start"
PARTITION_RANGE_END = "dagster/asset_partition_range_end"


def partition_range_tags(start: date, end: date) -> dict[str, str]:
    return {PARTITION_RANGE_START: start.isoformat(), PARTITION_RANGE_END: end.isoformat()}


def last_due_day(now: datetime) -> date:
    """The newest partition the daily schedule should have built by ``now``: partition D runs
    at D + 1 at RISK_DAILY_HOUR_UTC (an hour of slack lets the schedule's own run start)."""
    return (now - timedelta(hours=settings.load().daily_hour_utc + 1)).date() - timedelta(days=1)


def built_days(lakehouse: Lakehouse) -> set[date]:
    """The days whose snapshot exists (partition D built the snapshot as_of D + 1)."""
    return {
        d - timedelta(days=1) for d in lakehouse.partition_dates(CUSTOMER_FEATURES, "as_of_date")
    }


def missing_ranges(lakehouse: Lakehouse, last: date, longest: int = 31) -> list[tuple[date, date]]:
    """The days from the first day of data to ``last`` whose partition has not been built, as
    ranges of consecutive days (at most ``longest`` each: one run per range, as a backfill)."""
    built, first = built_days(lakehouse), settings.load().first_day()
    ranges: list[tuple[date, date]] = []
    for day in (first + timedelta(days=i) for i in range((last - first).days + 1)):
        if day in built:
            continue
        if (
            ranges
            and ranges[-1][1] == day - timedelta(days=1)
            and (day - ranges[-1][0]).days < longest
        ):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges
