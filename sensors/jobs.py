"""Jobs and schedules: what runs, and when (docs/architecture.md#data-flow).

* ``daily_features``: raw ingest -> dbt snapshots -> Delta -> online store, drift and realized
  performance for a day, at 02:00 UTC (RISK_DAILY_HOUR_UTC) for the day that just ended;
* ``train_models``: training set -> models -> registry gate, weekly and on the retrain sensors;
* ``freshness_checks``: the freshness checks alone (run by the freshness sensor);
* ``inference_log_maintenance``: the inference log's closed days compacted, just after midnight.
"""

from dagster import (
    AssetSelection,
    ScheduleDefinition,
    build_schedule_from_partitioned_job,
    define_asset_job,
    in_process_executor,
    job,
)

from assets.monitoring.checks import (
    customer_features_fresh,
    entity_features_fresh,
    online_store_fresh,
    raw_transactions_fresh,
)
from assets.monitoring.log_compaction import compact_inference_log
from assets.names import CANARY_CHECK, TRAINING
from assets.partitions import daily_partitions
from riskcore import settings
from sensors.status import SCHEDULE_STATUS

FRESHNESS_CHECKS = (
    raw_transactions_fresh,
    customer_features_fresh,
    *entity_features_fresh,
    online_store_fresh,
)

daily_features_job = define_asset_job(
    "daily_features",
    # Freshness is judged when the freshness sensor runs, not inside a (back)fill of old days.
    selection=AssetSelection.all()
    - AssetSelection.groups(TRAINING)
    - AssetSelection.checks(*FRESHNESS_CHECKS)
    - AssetSelection.assets(CANARY_CHECK),
    partitions_def=daily_partitions,
    # One process for the whole run: a step per process would load the project (7-14 s) for
    # each of ~10 steps, and DuckDB runs one writer anyway.
    executor_def=in_process_executor,
    description="Raw ingest -> dbt snapshots -> Delta export -> online store and drift for a "
    "day (or a backfill range).",
)

train_models_job = define_asset_job(
    "train_models",
    selection=AssetSelection.groups(TRAINING),
    executor_def=in_process_executor,
    description="Point-in-time training set -> LightGBM models -> MLflow, champion/challenger.",
)

freshness_job = define_asset_job(
    "freshness_checks",
    selection=AssetSelection.checks(*FRESHNESS_CHECKS),
    description="Evaluates the freshness checks of the raw data, the snapshots and the online "
    "store.",
)


@job(description="Daily maintenance of the inference log (compaction, vacuum).")
def inference_log_maintenance():
    compact_inference_log()


JOBS = [daily_features_job, train_models_job, freshness_job, inference_log_maintenance]

SCHEDULES = [
    # At 02:00 UTC, the day that just ended (partition D) becomes the snapshot as_of D + 1.
    build_schedule_from_partitioned_job(
        daily_features_job,
        hour_of_day=settings.load().daily_hour_utc,
        default_status=SCHEDULE_STATUS,
    ),
    ScheduleDefinition(
        name="inference_log_compaction",
        job=inference_log_maintenance,
        cron_schedule="30 0 * * *",  # just after midnight UTC closes a scored_date
        execution_timezone="UTC",
        default_status=SCHEDULE_STATUS,
    ),
    # Retraining also happens weekly, whatever drift says (labels keep maturing).
    ScheduleDefinition(
        name="weekly_retrain",
        job=train_models_job,
        cron_schedule="0 4 * * 1",
        execution_timezone="UTC",
        default_status=SCHEDULE_STATUS,
    ),
]
