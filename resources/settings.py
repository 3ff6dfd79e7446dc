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

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"

# Clearly labelled development key: the demo runs without configuration, production does not.
DEV_CARD_HASH_KEY = "dev-only-card-hash-key-do-not-use-in-production"


def data_dir() -> Path:
    return Path(os.environ.get("RISK_DATA_DIR", PROJECT_ROOT / "data")).resolve()


def lakehouse_uri() -> str:
    """Root of the Delta tables: a local folder by default, any deltalake URI (s3://...) allowed."""
    return os.environ.get("RISK_LAKEHOUSE_URI", str(data_dir() / "lakehouse")).rstrip("/")


def table_uri(name: str) -> str:
    return f"{lakehouse_uri()}/{name}"


def landing_dir() -> Path:
    return Path(os.environ.get("RISK_LANDING_DIR", data_dir() / "landing"))


def duckdb_path() -> Path:
    return Path(os.environ.get("RISK_DUCKDB_PATH", data_dir() / "warehouse.duckdb"))


def redis_url() -> str:
    """The online store: ``REDIS_URL`` (``redis://``, ``rediss://`` for TLS, user and password in
    the URL; comma-separated seed nodes for a cluster), or empty for the embedded server."""
    return os.environ.get("REDIS_URL", "")


def redis_cluster() -> bool:
    return os.environ.get("REDIS_CLUSTER", "0").lower() in {"1", "true", "yes"}


def embedded_redis_dir() -> Path:
    """Where the embedded online store keeps its data (when no REDIS_URL is given)."""
    return data_dir() / "online_store"


def online_ttl_seconds() -> int:
    """How long a generation of the online store lives unless a newer one supersedes it."""
    return int(os.environ.get("RISK_ONLINE_TTL_S", str(3 * 86_400)))


def mlflow_tracking_uri() -> str:
    """MLflow: ``MLFLOW_TRACKING_URI``, or a SQLite registry in the data folder."""
    default = f"sqlite:///{data_dir() / 'mlflow' / 'mlflow.db'}"
    uri = os.environ.get("MLFLOW_TRACKING_URI", default)
    if uri == default:
        (data_dir() / "mlflow").mkdir(parents=True, exist_ok=True)
    return uri


def mlflow_artifact_root() -> str:
    return os.environ.get("RISK_MLFLOW_ARTIFACTS", str(data_dir() / "mlflow" / "artifacts"))


def is_production() -> bool:
    return os.environ.get("RISK_ENV", "development").lower() in {"prod", "production"}


def card_hash_key() -> bytes:
    """The key for card hashes. Production refuses to run on the development key."""
    key = os.environ.get("RISK_CARD_HASH_KEY")
    if key:
        return key.encode()
    if is_production():
        raise RuntimeError("RISK_CARD_HASH_KEY must be set when RISK_ENV=production")
    return DEV_CARD_HASH_KEY.encode()


def partitions_start() -> date:
    """First day of data (Dagster's first daily partition)."""
    return date.fromisoformat(os.environ.get("RISK_START_DATE", "2026-01-01"))


def generator_seed() -> int:
    return int(os.environ.get("RISK_SEED", "7"))


def generator_customers() -> int:
    return int(os.environ.get("RISK_CUSTOMERS", "20000"))


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
