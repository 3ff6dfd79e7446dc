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
# DuckDB has hung inside a dbt query here (no CPU; the stall watch kills and reruns the step,
# resources/dbt_cli.py): the tests' builds report a model every few seconds, so two minutes of
# silence is a hang, and the suite does not wait the production default's ten.
os.environ.setdefault("RISK_DBT_STALL_S", "120")


import contextlib  # noqa: E402
import gc  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

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
    """The embedded online store that pipeline tests started in the throwaway data folder, and
    a background demo no test waited for (a run stopped early)."""
    from resources import local_redis
    from riskcore import settings

    try:
        local_redis.stop(settings.load().embedded_redis_dir)
    finally:
        if _DEMO in session.config.stash:
            session.config.stash[_DEMO].stop()


# The demo's defaults: the test weeks of a smaller world hold too few defaults to judge.
CUSTOMERS, DAYS = 20_000, 120
_DEMO = pytest.StashKey["BackgroundDemo"]()


class BackgroundDemo:
    """`make demo` (the user's defaults) in a data folder of its own, run in the background at
    low priority once the tests start: it takes ~40% of the suite's time, and the other tests
    run meanwhile on the other core (they are ordered first, so those that read it wait for
    it last). Stopped, with everything it started, and its folder removed at the end."""

    def __init__(self, timeout_s: float = 1800):
        from riskcore.settings import PROJECT_ROOT

        self.data = Path(tempfile.mkdtemp(prefix="risk-demo-data-"))
        (self.data / "dagster_home").mkdir()
        shutil.copy(PROJECT_ROOT / "resources" / "dagster.yaml", self.data / "dagster_home")
        not_inherited = {  # each follows the data folder unless set
            "RISK_LAKEHOUSE_URI",
            "RISK_DUCKDB_PATH",
            "RISK_LANDING_DIR",
            "REDIS_URL",
            "MLFLOW_TRACKING_URI",
        }
        self.env = {k: v for k, v in os.environ.items() if k not in not_inherited} | {
            "RISK_DATA_DIR": str(self.data),
            "DAGSTER_HOME": str(self.data / "dagster_home"),
            "RISK_CUSTOMERS": str(CUSTOMERS),
        }
        self.stdout, self.stderr = self.data / "demo.out", self.data / "demo.err"
        self.deadline = time.monotonic() + timeout_s
        with self.stdout.open("w") as out, self.stderr.open("w") as err:
            self.process = subprocess.Popen(
                ["nice", "-n", "10", sys.executable, "-m", "demo.run", "--days", str(DAYS)],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group: dbt's processes stop with it
            )

    def result(self) -> tuple[Path, str]:
        """The data folder and the demo's output, once it has finished (successfully)."""
        try:
            returncode = self.process.wait(timeout=max(0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._kill()
            pytest.fail(f"the demo did not finish in time: {self.stderr.read_text()[-4000:]}")
        assert returncode == 0, self.stderr.read_text()[-4000:]
        return self.data, self.stdout.read_text()

    def _kill(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
                return

    def stop(self) -> None:
        from resources import local_redis

        try:
            if self.process.poll() is None:
                self._kill()
            local_redis.stop(self.data / "online_store")
        finally:
            shutil.rmtree(self.data, ignore_errors=True)


def _background_demo(config: pytest.Config) -> BackgroundDemo:
    if _DEMO not in config.stash:
        config.stash[_DEMO] = BackgroundDemo()
    return config.stash[_DEMO]


@pytest.hookimpl(tryfirst=True)  # before the run loop: the items are final (-m, -k, --lf, --ff)
def pytest_runtestloop(session):
    """The tests that read the demo's world last, and the demo started now, in the background."""
    if session.config.option.collectonly or session.testsfailed:
        return  # nothing runs (or collection failed): the default loop says so
    reading = [item for item in session.items if "demo" in getattr(item, "fixturenames", ())]
    if reading:
        session.items[:] = [item for item in session.items if item not in reading] + reading
        _background_demo(session.config)


@pytest.fixture(scope="session")
def demo_env(pytestconfig) -> dict[str, str]:
    """The environment of `make demo` in its data folder (the user's defaults)."""
    return _background_demo(pytestconfig).env


@pytest.fixture(scope="session")
def demo(pytestconfig):
    """The demo's data folder and output (tests/test_demo_models.py reads its models, then
    tests/test_simulate.py runs a short season after its history)."""
    background = _background_demo(pytestconfig)
    try:
        yield background.result()
    finally:
        background.stop()


@pytest.fixture(autouse=True)
def _nothing_frozen_between_tests():
    """The service freezes what its startup made (serving/app.py); in one test process that
    would keep every app a test started alive to the end: unfreeze after each test."""
    yield
    if gc.get_freeze_count():
        gc.unfreeze()
