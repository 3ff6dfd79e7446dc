"""The Dagster definitions load, and every asset, check, job, schedule and sensor resolves."""

import json
from pathlib import Path

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
    "int_labelled_purchases",
    "fct_customer_features_daily",
    "lakehouse/customer_features_daily",
    *(f"fct_{e}_features_daily" for e in ("device", "merchant", "card")),
    *(f"lakehouse/{e}_features_daily" for e in ("device", "merchant", "card")),
    "online_customer_features",
    "online_entity_features",
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


def test_the_daily_job_and_training_hold_different_pools(tmp_path):
    """One run at a time writes the warehouse and one changes the registry; a training run or a
    canary check does not wait behind the daily job (resources/dagster.yaml)."""
    from dagster import DagsterInstance

    from assets.names import REGISTRY_POOL, WAREHOUSE_POOL

    graph = defs.resolve_asset_graph()

    def pools(job: str) -> set[str]:
        keys = defs.resolve_job_def(job).asset_layer.executable_asset_keys
        return {pool for key in keys for pool in graph.get(key).pools}

    assert pools("daily_features") == {WAREHOUSE_POOL}
    assert pools("train_models") == pools("canary_check") == {REGISTRY_POOL}
    daily = defs.resolve_job_def("daily_features").asset_layer.executable_asset_keys
    assert all(graph.get(key).pools == {WAREHOUSE_POOL} for key in daily)
    # The instance's configuration as `make setup` installs it is valid and says so.
    (tmp_path / "dagster.yaml").write_text(
        (Path(__file__).parents[1] / "resources" / "dagster.yaml").read_text()
    )
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        settings = instance.get_concurrency_config()
        assert settings.pool_config.pool_granularity.value == "run"
        assert settings.pool_config.default_pool_limit == 1
        assert settings.run_queue_config.max_concurrent_runs > 1


def test_schedule_runs_the_previous_day_at_two():
    schedule = next(s for s in defs.schedules if s.name != "weekly_retrain")
    assert defs.resolve_schedule_def(schedule.name).cron_schedule == "0 2 * * *"


def test_dbt_arguments_come_from_the_partition_range():
    from datetime import date

    days = [date(2026, 1, 5), date(2026, 1, 6)]
    assert dbt_vars(days) == {"start_date": "2026-01-05", "end_date": "2026-01-06"}
    assert dbt_build_args(days)[:2] == ["build", "--vars"]
    assert json.loads(dbt_build_args(days)[2]) == dbt_vars(days)
