"""Freshness: a sensor that evaluates the freshness checks every 30 minutes (a checks-only
run: nothing is materialized), so a stale table or online store turns red in the UI even on a
day the daily batch did not run."""

from dagster import RunRequest, SensorEvaluationContext, sensor

from riskcore import settings
from sensors.jobs import freshness_job
from sensors.status import SENSOR_STATUS


@sensor(
    job=freshness_job,
    minimum_interval_seconds=1800,
    default_status=SENSOR_STATUS,
    description="Runs the freshness checks every 30 minutes.",
)
def freshness(context: SensorEvaluationContext):
    bucket = int(context.cursor or 0)
    now = int(settings.now().timestamp()) // 1800
    if now <= bucket:
        return None
    context.update_cursor(str(now))
    return RunRequest(run_key=f"freshness:{now}")
