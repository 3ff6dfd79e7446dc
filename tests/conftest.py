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
# A challenger that passes the gate is promoted at once, as the tests of the gate, drift and
# rollback expect; the canary path is tested with a share set (tests/test_canary.py).
os.environ.setdefault("RISK_CANARY_SHARE", "0")


import gc  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def feature_set():
    """The registry's feature set (the dbt manifest is parsed first when stale)."""
    import assets.features.dbt  # noqa: F401
    from featurestore.registry import load_feature_set

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


# The demo's defaults: the test weeks of a smaller world hold too few defaults to judge.
CUSTOMERS, DAYS = 20_000, 120


@pytest.fixture(scope="session")
def demo_env(tmp_path_factory):
    """The environment of `make demo` in a data folder of its own (the user's defaults)."""
    from riskcore.settings import PROJECT_ROOT

    data = tmp_path_factory.mktemp("demo-data")
    (data / "dagster_home").mkdir()
    shutil.copy(PROJECT_ROOT / "resources" / "dagster.yaml", data / "dagster_home")
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "RISK_LAKEHOUSE_URI",
            "RISK_DUCKDB_PATH",
            "RISK_LANDING_DIR",
            "REDIS_URL",
            "MLFLOW_TRACKING_URI",
        }
    }
    env |= {
        "RISK_DATA_DIR": str(data),
        "DAGSTER_HOME": str(data / "dagster_home"),
        "RISK_CUSTOMERS": str(CUSTOMERS),
    }
    return env


@pytest.fixture(scope="session")
def demo(demo_env):
    """The demo run once for the session (tests/test_demo_models.py reads its models, then
    tests/test_simulate.py runs a short season after its history)."""
    from resources import local_redis
    from riskcore.settings import PROJECT_ROOT

    data = Path(demo_env["RISK_DATA_DIR"])
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "demo.run", "--days", str(DAYS)],
            cwd=PROJECT_ROOT,
            env=demo_env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        yield data, proc.stdout
    finally:
        local_redis.stop(data / "online_store")


@pytest.fixture(autouse=True)
def _nothing_frozen_between_tests():
    """The service freezes what its startup made (serving/app.py); in one test process that
    would keep every app a test started alive to the end: unfreeze after each test."""
    yield
    if gc.get_freeze_count():
        gc.unfreeze()
