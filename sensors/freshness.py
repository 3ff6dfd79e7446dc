"""Freshness: a sensor that evaluates the freshness checks every 30 minutes (a checks-only
run: nothing is materialized), so a stale table or online store turns red in the UI even on a
day the daily batch did not run."""

import time

from dagster import AssetSelection, RunRequest, SensorEvaluationContext, define_asset_job, sensor

from assets.monitoring.checks import (
    customer_features_fresh,
    online_store_fresh,
    raw_transactions_fresh,
)

FRESHNESS_CHECKS = (raw_transactions_fresh, customer_features_fresh, online_store_fresh)
freshness_job = define_asset_job(
    "freshness_checks",
    selection=AssetSelection.checks(*FRESHNESS_CHECKS),
    description="Evaluates the freshness checks of the raw data, the snapshots and the online "
    "store.",
)


@sensor(
    job=freshness_job,
    minimum_interval_seconds=1800,
    description="Runs the freshness checks every 30 minutes.",
)
def freshness(context: SensorEvaluationContext):
    bucket = int(context.cursor or 0)
    now = int(time.time()) // 1800
    if now <= bucket:
        return None
    context.update_cursor(str(now))
    return RunRequest(run_key=f"freshness:{now}")
