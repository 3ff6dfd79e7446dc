"""Everything Dagster loads, assembled: assets, checks, jobs, schedules, sensors and resources
(each defined in its own module; docs/architecture.md#layers)."""

from dagster import Definitions
from dagster_dbt import DbtCliResource

from assets.features.dbt import dbt_features, dbt_project
from assets.features.export import customer_features_daily, entity_features_daily
from assets.features.online import (
    online_customer_features,
    online_entity_features,
    online_store_serves_newest_snapshot,
)
from assets.ingest.raw import raw_labels, raw_transactions
from assets.ingest.sources import RawSources
from assets.monitoring.assets import canary_comparison, feature_drift, realized_performance
from assets.monitoring.checks import model_quality, snapshot_consistent
from assets.training.assets import risk_models, training_set, training_set_is_usable
from resources import dbt_cli
from resources.alerts import AlertWebhook
from resources.lakehouse import Lakehouse
from resources.online_store import from_environment as online_store_from_environment
from riskcore import settings
from sensors.alerts import alert_on_run_failure, alert_on_trouble
from sensors.canary import canary_check_job, canary_watch
from sensors.catch_up import catch_up
from sensors.drift import build_drift_sensor, build_performance_sensor
from sensors.freshness import freshness
from sensors.jobs import FRESHNESS_CHECKS, JOBS, SCHEDULES, train_models_job
from sensors.online_store import online_store_refill

defs = Definitions(
    assets=[
        raw_transactions,
        raw_labels,
        dbt_features,
        customer_features_daily,
        *entity_features_daily,
        online_customer_features,
        online_entity_features,
        feature_drift,
        realized_performance,
        canary_comparison,
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
    jobs=[*JOBS, canary_check_job],
    schedules=SCHEDULES,
    sensors=[
        online_store_refill,
        build_drift_sensor(train_models_job),
        build_performance_sensor(train_models_job),
        freshness,
        canary_watch,
        catch_up,
        alert_on_run_failure,
        alert_on_trouble,
    ],
    resources={
        # The root is read when a run uses it (RISK_LAKEHOUSE_URI), as dbt's sources read it.
        "lakehouse": Lakehouse(),
        "raw_sources": RawSources.from_settings(),
        "online_store": online_store_from_environment(),
        "alerts": AlertWebhook(url=settings.load().alert_webhook.get_secret_value()),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_cli.dbt_executable()),
    },
)
