"""Everything Dagster loads: assets, checks, jobs, schedules and resources."""

from dagster import (
    AssetSelection,
    Definitions,
    ScheduleDefinition,
    build_schedule_from_partitioned_job,
    define_asset_job,
)
from dagster_dbt import DbtCliResource

from assets.features.dbt import dbt_features, dbt_project
from assets.features.export import customer_features_daily
from assets.features.online import online_customer_features, online_store_serves_newest_snapshot
from assets.ingest.raw import raw_labels, raw_transactions
from assets.ingest.sources import RawSources
from assets.monitoring.assets import feature_drift, realized_performance
from assets.monitoring.checks import model_quality, snapshot_consistent
from assets.monitoring.log_compaction import inference_log_maintenance
from assets.partitions import daily_partitions
from assets.training.assets import risk_models, training_set, training_set_is_usable
from resources import dbt_cli
from resources.lakehouse import Lakehouse
from resources.online_store import from_environment as online_store_from_environment
from riskcore import settings
from sensors.drift import build_drift_sensor, build_performance_sensor
from sensors.freshness import FRESHNESS_CHECKS, freshness, freshness_job
from sensors.online_store import online_store_refill

config = settings.load()

daily_features_job = define_asset_job(
    "daily_features",
    # Freshness is judged when the freshness sensor runs, not inside a (back)fill of old days.
    selection=AssetSelection.all()
    - AssetSelection.groups("training")
    - AssetSelection.checks(*FRESHNESS_CHECKS),
    partitions_def=daily_partitions,
    description="Raw ingest -> dbt snapshots -> Delta export -> online store and drift for a "
    "day (or a backfill range).",
)

train_models_job = define_asset_job(
    "train_models",
    selection=AssetSelection.groups("training"),
    description="Point-in-time training set -> LightGBM models -> MLflow, champion/challenger.",
)

defs = Definitions(
    assets=[
        raw_transactions,
        raw_labels,
        dbt_features,
        customer_features_daily,
        online_customer_features,
        feature_drift,
        realized_performance,
        training_set,
        risk_models,
    ],
    asset_checks=[
        online_store_serves_newest_snapshot,
        training_set_is_usable,
        snapshot_consistent,
        model_quality,
        *FRESHNESS_CHECKS,
    ],
    jobs=[daily_features_job, train_models_job, freshness_job, inference_log_maintenance],
    schedules=[
        # At 02:00 UTC, the day that just ended (partition D) becomes the snapshot as_of D + 1.
        build_schedule_from_partitioned_job(daily_features_job, hour_of_day=config.daily_hour_utc),
        ScheduleDefinition(
            name="inference_log_compaction",
            job=inference_log_maintenance,
            cron_schedule="30 0 * * *",  # just after midnight UTC closes a scored_date
            execution_timezone="UTC",
        ),
        # Retraining also happens weekly, whatever drift says (labels keep maturing).
        ScheduleDefinition(
            name="weekly_retrain",
            job=train_models_job,
            cron_schedule="0 4 * * 1",
            execution_timezone="UTC",
        ),
    ],
    sensors=[
        online_store_refill,
        build_drift_sensor(train_models_job),
        build_performance_sensor(train_models_job),
        freshness,
    ],
    resources={
        "lakehouse": Lakehouse(root_uri=config.lakehouse_uri),
        "raw_sources": RawSources.from_settings(),
        "online_store": online_store_from_environment(),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_cli.dbt_executable()),
    },
)
