"""Settings that serving and the pipeline share, read from the environment (one place).

``resources/settings.py`` re-exports these for the pipeline; serving reads them here, so a
scoring pod needs neither Dagster nor the rest of the project's configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Clearly labelled development key: the demo runs without configuration, production does not.
DEV_CARD_HASH_KEY = "dev-only-card-hash-key-do-not-use-in-production"


def data_dir() -> Path:
    return Path(os.environ.get("RISK_DATA_DIR", PROJECT_ROOT / "data")).resolve()


def lakehouse_uri() -> str:
    """Root of the Delta tables: a local folder by default, any deltalake URI (s3://...) allowed."""
    return os.environ.get("RISK_LAKEHOUSE_URI", str(data_dir() / "lakehouse")).rstrip("/")


def inference_log_uri(lakehouse_root: str | None = None) -> str:
    """Where serving logs its decisions and monitoring reads them: ``RISK_INFERENCE_LOG_URI``
    (empty: no log), else ``serving/inference_log`` under the lakehouse root."""
    root = (lakehouse_root or lakehouse_uri()).rstrip("/")
    return os.environ.get("RISK_INFERENCE_LOG_URI", f"{root}/serving/inference_log")


def redis_url() -> str:
    """The online store: ``REDIS_URL`` (``redis://``, ``rediss://`` for TLS, user and password in
    the URL; comma-separated seed nodes for a cluster), or empty for the embedded server."""
    return os.environ.get("REDIS_URL", "")


def redis_cluster() -> bool:
    return os.environ.get("REDIS_CLUSTER", "0").lower() in {"1", "true", "yes"}


def mlflow_tracking_uri() -> str:
    """MLflow: ``MLFLOW_TRACKING_URI``, or a SQLite registry in the data folder."""
    default = f"sqlite:///{data_dir() / 'mlflow' / 'mlflow.db'}"
    uri = os.environ.get("MLFLOW_TRACKING_URI", default)
    if uri == default:
        (data_dir() / "mlflow").mkdir(parents=True, exist_ok=True)
    return uri


def is_production() -> bool:
    return os.environ.get("RISK_ENV", "development").lower() in {"prod", "production"}


def card_hash_key() -> bytes:
    """The key for card hashes and every other keyed hash (customer ids in the inference log).
    Production refuses to run on the development key."""
    key = os.environ.get("RISK_CARD_HASH_KEY")
    if key:
        return key.encode()
    if is_production():
        raise RuntimeError("RISK_CARD_HASH_KEY must be set when RISK_ENV=production")
    return DEV_CARD_HASH_KEY.encode()
