import os
import tempfile
from pathlib import Path

# Tests never touch the user's data folder (make exports it): everything lives in a throwaway
# one, and the paths derived from it are not inherited.
_data = Path(tempfile.mkdtemp(prefix="risk-test-data-"))
os.environ["RISK_DATA_DIR"] = str(_data)
for _var in ("RISK_LAKEHOUSE_URI", "RISK_DUCKDB_PATH", "RISK_LANDING_DIR"):
    os.environ.pop(_var, None)
os.environ["DAGSTER_HOME"] = str(_data / "dagster_home")
Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
# Small populations keep pipeline tests quick; the generator's scale is benchmarked separately.
os.environ.setdefault("RISK_CUSTOMERS", "800")
# Fixed dates: tests pin figures of a known calendar (the live default follows the clock).
os.environ.setdefault("RISK_START_DATE", "2026-01-01")
# No schedule or sensor runs by itself in a test's Dagster (tests evaluate them directly).
os.environ.setdefault("RISK_AUTOMATIONS", "0")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def feature_set():
    """The registry's feature set (the dbt manifest is parsed first when stale)."""
    import assets.features.dbt  # noqa: F401
    from assets.features.registry import load_feature_set

    return load_feature_set()


@pytest.fixture(scope="session")
def env(tmp_path_factory, feature_set):
    """A serving environment (tests/serving_env.py): models registered in MLflow, a snapshot
    generation in a real redis-server; shared by the serving and monitoring tests."""
    from tests import serving_env

    built = serving_env.build(tmp_path_factory.mktemp("serving"), feature_set)
    yield built
    built.redis.kill()


def pytest_sessionfinish(session, exitstatus):
    """The embedded online store that pipeline tests started in the throwaway data folder."""
    from resources import local_redis
    from riskcore import settings

    local_redis.stop(settings.load().embedded_redis_dir)
