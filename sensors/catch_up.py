"""Catch-up: no day is ever a silent hole. Where a due daily partition has no snapshot (the
daemon was down, a run failed, a new deployment starts after its history), the gap is built,
a month per run, as a backfill would, and in order, oldest first."""

from dagster import RunRequest, RunsFilter, SensorEvaluationContext, SkipReason, sensor

from assets.partitions import last_due_day, missing_ranges, partition_range_tags
from resources.lakehouse import Lakehouse
from riskcore import settings
from sensors.drift import IN_FLIGHT
from sensors.jobs import daily_features_job
from sensors.status import SENSOR_STATUS


@sensor(
    job=daily_features_job,
    minimum_interval_seconds=600,
    default_status=SENSOR_STATUS,
    description="Builds every due day that has no snapshot (a gap left by a stopped daemon or a "
    "failed run), oldest first, up to a month per run.",
)
def catch_up(context: SensorEvaluationContext, lakehouse: Lakehouse):
    now = settings.now()
    due = last_due_day(now)
    job = daily_features_job.name
    if context.instance.get_runs(RunsFilter(job_name=job, statuses=IN_FLIGHT), limit=1):
        return SkipReason(f"a {job} run is in flight: gaps are judged after it")
    gaps = missing_ranges(lakehouse, due)
    if not gaps:
        return SkipReason(f"no gap: every day up to {due} has its snapshot")
    start, end = gaps[0]  # one run at a time (DuckDB has one writer), oldest first
    context.log.info(f"building {start}..{end} ({len(gaps)} gap(s) up to {due})")
    return RunRequest(
        # At most one attempt an hour per gap: a day that keeps failing is retried, not stormed.
        run_key=f"catch-up:{start}..{end}:{now:%Y-%m-%dT%H}",
        tags={**partition_range_tags(start, end), "risk/trigger": "catch-up"},
    )
