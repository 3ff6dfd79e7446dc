"""The Dagster definitions load, and every asset, check, job, schedule and sensor resolves."""

import json

from dagster import Definitions

from assets.features.dbt import dbt_build_args, dbt_vars
from definitions import defs

EXPECTED_ASSETS = {
    "raw/transactions",
    "raw/labels",
    "category_risk",
    "stg_raw__transactions",
    "stg_raw__labels",
    "int_customer_days_rolled_up",
    "int_customer_categories_rolled_up",
    "int_customer_countries_rolled_up",
    "int_customer_devices_rolled_up",
    "int_transactions_labelled",
    "fct_customer_features_daily",
    "lakehouse/customer_features_daily",
    "online_customer_features",
    "training/training_set",
    "risk_models",
    "monitoring/feature_drift",
    "monitoring/realized_performance",
    "rollout/canary_comparison",
}


def test_definitions_load_and_resolve():
    Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == EXPECTED_ASSETS
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert (
        "fct_customer_features_daily",
        "unique_in_snapshot_fct_customer_features_daily_customer_id__as_of_date",
    ) in checks
    assert len(checks) >= 30
    for job in defs.jobs or []:
        defs.resolve_job_def(job.name)
    for schedule in defs.schedules or []:
        assert defs.resolve_schedule_def(schedule.name).cron_schedule
    for sensor in defs.sensors or []:
        defs.resolve_sensor_def(sensor.name)


def test_every_daily_asset_is_partitioned_with_batched_backfills():
    graph = defs.resolve_asset_graph()
    daily = defs.resolve_job_def("daily_features").asset_layer.executable_asset_keys
    assert len(daily) >= 10
    for key in daily:
        node = graph.get(key)
        assert node.partitions_def is not None, key
        assert node.backfill_policy.max_partitions_per_run == 31, key


def test_schedule_runs_the_previous_day_at_two():
    schedule = next(s for s in defs.schedules if s.name != "weekly_retrain")
    assert defs.resolve_schedule_def(schedule.name).cron_schedule == "0 2 * * *"


def test_dbt_arguments_come_from_the_partition_range():
    from datetime import date

    days = [date(2026, 1, 5), date(2026, 1, 6)]
    assert dbt_vars(days) == {"start_date": "2026-01-05", "end_date": "2026-01-06"}
    assert dbt_build_args(days)[:2] == ["build", "--vars"]
    assert json.loads(dbt_build_args(days)[2]) == dbt_vars(days)
