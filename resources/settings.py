"""Where local state lives and which secrets are in force; everything comes from the environment.

One data folder (``RISK_DATA_DIR``, default ``./data``) holds the lakehouse, the DuckDB file,
MLflow's store and Dagster's home, so ``make clean`` is one ``rm -rf``. Any of them can be
pointed elsewhere (an ``s3://`` lakehouse, a tracking server) by its own variable.
"""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path

from riskcore.settings import (  # noqa: F401  (shared with serving; re-exported here)
    DEV_CARD_HASH_KEY,
    PROJECT_ROOT,
    card_hash_key,
    data_dir,
    is_production,
    lakehouse_uri,
    mlflow_tracking_uri,
    redis_cluster,
    redis_url,
)

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"


def table_uri(name: str) -> str:
    return f"{lakehouse_uri()}/{name}"


def landing_dir() -> Path:
    return Path(os.environ.get("RISK_LANDING_DIR", data_dir() / "landing"))


def duckdb_path() -> Path:
    return Path(os.environ.get("RISK_DUCKDB_PATH", data_dir() / "warehouse.duckdb"))


def embedded_redis_dir() -> Path:
    """Where the embedded online store keeps its data (when no REDIS_URL is given)."""
    return data_dir() / "online_store"


def online_ttl_seconds() -> int:
    """How long a generation of the online store lives unless a newer one supersedes it."""
    return int(os.environ.get("RISK_ONLINE_TTL_S", str(3 * 86_400)))


def mlflow_artifact_root() -> str:
    return os.environ.get("RISK_MLFLOW_ARTIFACTS", str(data_dir() / "mlflow" / "artifacts"))


def partitions_start() -> date:
    """First day of data (Dagster's first daily partition)."""
    return date.fromisoformat(os.environ.get("RISK_START_DATE", "2026-01-01"))


def daily_hour() -> int:
    """UTC hour of the daily schedule (02:00: the day that ended becomes a snapshot)."""
    return int(os.environ.get("RISK_DAILY_HOUR_UTC", "2"))


def generator_seed() -> int:
    return int(os.environ.get("RISK_SEED", "7"))


def generator_customers() -> int:
    return int(os.environ.get("RISK_CUSTOMERS", "20000"))


def generator_drift_from() -> str:
    """ISO day from which the generator injects drift (``make drift-demo``); empty: none."""
    return os.environ.get("RISK_DRIFT_FROM", "")


def synthetic_source_enabled() -> bool:
    """The embedded generator feeds the raw tables unless turned off (real landing files only)."""
    return os.environ.get("RISK_SYNTHETIC", "1").lower() not in {"0", "false", "no"}


def dbt_env() -> dict[str, str]:
    """What the dbt project reads from the environment (see dbt_project/profiles.yml)."""
    return {
        "RISK_LAKEHOUSE_URI": lakehouse_uri(),
        "RISK_DUCKDB_PATH": str(duckdb_path()),
        "RISK_DUCKDB_MEMORY_LIMIT": os.environ.get("RISK_DUCKDB_MEMORY_LIMIT", "3GB"),
    }


def dbt_executable() -> str:
    """The dbt of this interpreter's environment (the project's venv), so PATH need not be set.

    ``sys.prefix``, not ``sys.executable``: a subprocess may run the venv's python by its
    resolved path, outside the venv's bin folder.
    """
    for folder in (Path(sys.prefix) / "bin", Path(sys.executable).parent):
        if (folder / "dbt").exists():
            return str(folder / "dbt")
    return "dbt"
