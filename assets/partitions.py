"""Daily partitions: key D is the last UTC day of data (snapshot rows carry as_of = D + 1 day)."""

from datetime import UTC, date, datetime

from dagster import BackfillPolicy, DailyPartitionsDefinition

from riskcore import settings

daily_partitions = DailyPartitionsDefinition(
    start_date=settings.load().start_date.isoformat(), timezone="UTC"
)

# A backfill runs ranges of up to a month per run: one dbt start-up and one Delta commit per
# table instead of one per day, with memory still bounded.
monthly_batches = BackfillPolicy.multi_run(max_partitions_per_run=31)


def as_of_time(as_of_date: date) -> datetime:
    """The as_of of a snapshot date: its 00:00 UTC."""
    return datetime(as_of_date.year, as_of_date.month, as_of_date.day, tzinfo=UTC)
