"""One typed settings module: every variable once; a bad value names the variable and the value;
README's configuration table is the module's own (python -m riskcore.settings)."""

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from riskcore import settings
from serving.config import ServingConfig

ROOT = Path(__file__).resolve().parent.parent


def test_readme_configuration_table_equals_the_settings_module():
    readme = (ROOT / "README.md").read_text()
    assert settings.markdown_table() in readme, (
        "README's configuration table differs from riskcore/settings.py: "
        "regenerate it with `python -m riskcore.settings`"
    )


def test_defaults_follow_the_data_folder(monkeypatch, tmp_path):
    for name in settings.Settings.model_fields:
        monkeypatch.delenv(settings.variable(name), raising=False)
    monkeypatch.setenv("RISK_DATA_DIR", str(tmp_path))
    env = settings.load()
    assert env.lakehouse_uri == str(tmp_path / "lakehouse")
    assert env.duckdb_path == tmp_path / "warehouse.duckdb"
    assert env.inference_log() == f"{tmp_path}/lakehouse/serving/inference_log"
    assert env.inference_log("s3://lake/") == "s3://lake/serving/inference_log"
    assert env.mlflow_tracking_uri == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert env.drift_from is None
    # Live by default: the window ends yesterday; the calendar, once chosen, is kept.
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    assert env.last_demo_day() == yesterday
    assert env.first_day() == yesterday - timedelta(days=env.demo_days - 1)
    monkeypatch.setenv("RISK_DEMO_DAYS", "30")
    assert settings.load().first_day() == env.first_day()  # the data folder's calendar
    monkeypatch.setenv("RISK_START_DATE", "2026-01-01")
    assert settings.load().first_day() == date(2026, 1, 1)
    monkeypatch.setenv("RISK_INFERENCE_LOG_URI", "")  # empty: the log is off
    monkeypatch.setenv("RISK_DRIFT_FROM", "")
    assert settings.load().inference_log() == "" and settings.load().drift_from is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RISK_DAILY_HOUR_UTC", "2am"),
        ("RISK_SERVING_REDIS_TIMEOUT_MS", "fast"),
        ("REDIS_CLUSTER", "maybe"),
        ("RISK_START_DATE", "2026-13-01"),
        ("RISK_CHARGEBACK_DELAY_DAYS", "60,2"),
        ("RISK_DEFAULT_DELAY_DAYS", "30 days"),
        ("RISK_CANARY_SHARE", "5"),  # a share is in [0, 1]: 5 is not 5%
        ("RISK_HOLDOUT_SHARE", "-0.1"),
        ("RISK_REVIEW_COST", "-5"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_value(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(settings.SettingsError) as error:
        settings.load()
    assert variable in str(error.value) and repr(value) in str(error.value)


def test_secrets_are_never_repeated(monkeypatch):
    monkeypatch.setenv("RISK_API_KEYS", "k-secret-1, k-secret-2")
    monkeypatch.setenv("RISK_CARD_HASH_KEY", "hash-secret")
    env = settings.load()
    assert "secret" not in repr(env) and "secret" not in str(env)
    assert env.api_key_list() == ("k-secret-1", "k-secret-2")
    assert env.hash_key() == b"hash-secret"


def test_production_refuses_the_development_hash_key(monkeypatch):
    monkeypatch.delenv("RISK_CARD_HASH_KEY", raising=False)
    monkeypatch.setenv("RISK_ENV", "production")
    with pytest.raises(settings.SettingsError, match="RISK_CARD_HASH_KEY"):
        settings.load().hash_key()


def test_the_service_reads_its_configuration_from_the_settings(monkeypatch):
    monkeypatch.setenv("RISK_SERVING_DEV", "1")
    monkeypatch.setenv("RISK_FRAUD_DECLINE", "0.7")
    monkeypatch.setenv("RISK_SERVING_MAX_BATCH", "50")
    config = ServingConfig.from_environment()
    assert config.dev_mode and config.api_keys == (settings.DEV_API_KEY,)
    assert config.thresholds.fraud_decline == 0.7 and config.max_batch == 50


def test_label_delays_reach_the_generator(monkeypatch):
    """The defaults are the generator's own; `shortest,longest` from the environment reaches
    the generator the raw sources build (a simulation's short delays)."""
    from assets.ingest.sources import RawSources
    from assets.ingest.synthetic import GeneratorConfig

    monkeypatch.delenv("RISK_CHARGEBACK_DELAY_DAYS", raising=False)
    monkeypatch.delenv("RISK_DEFAULT_DELAY_DAYS", raising=False)
    env = settings.load()
    assert (env.chargeback_delay_days, env.default_delay_days) == (
        GeneratorConfig.chargeback_delay_days,
        GeneratorConfig.default_delay_days,
    )
    monkeypatch.setenv("RISK_CHARGEBACK_DELAY_DAYS", "1, 3")
    monkeypatch.setenv("RISK_DEFAULT_DELAY_DAYS", "4,9")
    config = RawSources(customers=100).generator_config()
    assert (config.chargeback_delay_days, config.default_delay_days) == ((1, 3), (4, 9))
    assert config.max_label_delay_days == 10


def test_the_clock_alone_reads_as_all_the_settings_do(monkeypatch):
    """``settings.now()`` (the online store asks it on serving's loop) is ``load().now()``."""
    monkeypatch.setenv("RISK_CLOCK", "2026-03-04T05:06:07+02:00")
    assert settings.now() == settings.load().now() == datetime(2026, 3, 4, 3, 6, 7, tzinfo=UTC)
    monkeypatch.setenv("RISK_CLOCK", "")
    assert abs(settings.now() - datetime.now(UTC)) < timedelta(seconds=5)
    monkeypatch.setenv("RISK_CLOCK", "yesterday")
    with pytest.raises(settings.SettingsError, match="RISK_CLOCK='yesterday'"):
        settings.now()


def test_settings_are_read_again_only_when_the_environment_changed(monkeypatch, tmp_path):
    """load() is asked per ingested day and per pointer refresh: the same environment gives
    the same (frozen) settings without reading them again; any change, a bad value included,
    or another working folder (a relative data folder follows it) reads them again."""
    first = settings.load()
    assert settings.load() is first
    monkeypatch.setenv("RISK_SEED", "123")
    assert settings.load().seed == 123
    monkeypatch.setenv("RISK_SEED", "two")
    with pytest.raises(settings.SettingsError, match="RISK_SEED='two'"):
        settings.load()
    monkeypatch.setenv("RISK_SEED", "7")
    monkeypatch.setenv("RISK_DATA_DIR", "relative-data")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    assert settings.load().data_dir == tmp_path / "relative-data"
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert settings.load().data_dir == tmp_path / "elsewhere" / "relative-data"


def test_a_clock_without_a_time_zone_is_utc_whatever_the_machine_zone(monkeypatch):
    monkeypatch.setenv("RISK_CLOCK", "2026-03-04T05:06:07")
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        expected = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
        assert settings.now() == settings.load().now() == expected
    finally:
        monkeypatch.undo()  # the machine's zone back, then read again
        time.tzset()
