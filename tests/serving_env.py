"""A real serving environment for the tests, built as production builds it: snapshots and
purchases in Delta -> the point-in-time training set -> both targets' models trained,
registered in a SQLite MLflow registry and promoted by the gate -> a snapshot generation in a
real redis-server. Small (1,500 customers, a month), so a test session builds it in seconds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets.monitoring.drift import snapshot_reference
from assets.training.dataset import (
    TRANSACTION_COLUMNS,
    TrainingWindow,
    build_training_set,
    table_vocabularies,
)
from assets.training.models import gate, log_and_register, train_bundle
from resources.lakehouse import CUSTOMER_FEATURES, LABELS, TRANSACTIONS, Lakehouse
from resources.local_redis import LocalRedis
from riskcore.codec import with_digests
from riskcore.feature_set import FeatureSet
from riskcore.online_store import OnlineStore
from serving.config import ServingConfig, Thresholds
from tests.snapshot_tables import snapshot_table

START = date(2026, 3, 1)
DAYS = 30
CUSTOMERS = 1500
SERVED_AS_OF = START + timedelta(days=DAYS - 2)  # the partition loaded into Redis
API_KEY = "test-key-0123456789"
HASH_KEY = b"test-hash-key"


@dataclass
class ServingEnv:
    tracking_uri: str
    lakehouse: Lakehouse
    training: pa.Table
    purchases: pa.Table
    redis: LocalRedis
    feature_set: FeatureSet
    log_uri: str

    def config(self, **changes) -> ServingConfig:
        base = {
            "api_keys": (API_KEY,),
            "redis_url": self.redis.url,
            "tracking_uri": self.tracking_uri,
            "inference_log_uri": self.log_uri,
            "hash_key": HASH_KEY,
            "breaker_cooldown_s": 0.2,
            "redis_timeout_ms": 50.0,
            "log_flush_s": 3600,
            "thresholds": Thresholds(),
        }
        return ServingConfig(**(base | changes))

    def served_rows(self) -> pa.Table:
        """Training rows whose snapshot is the one in Redis (and unknown customers' rows of the
        same days): what /score must reproduce exactly."""
        as_of = datetime(SERVED_AS_OF.year, SERVED_AS_OF.month, SERVED_AS_OF.day, tzinfo=UTC)
        lag = timedelta(hours=6)
        at = self.training["event_ts"]
        ts = lambda d: pa.scalar(d, pa.timestamp("us", "UTC"))  # noqa: E731
        in_window = pc.and_(
            pc.greater_equal(at, ts(as_of + lag)), pc.less(at, ts(as_of + timedelta(days=1) + lag))
        )
        return self.training.filter(in_window)

    def transaction(self, transaction_id: str) -> dict:
        """A purchase as the payment flow would send it (JSON-ready)."""
        row = self.purchases.filter(pc.equal(self.purchases["transaction_id"], transaction_id))
        r = row.to_pylist()[0]
        return {
            "transaction_id": r["transaction_id"],
            "customer_id": r["customer_id"],
            "event_ts": r["event_ts"].isoformat(),
            "amount": str(r["amount"]),
            "merchant_category": r["merchant_category"],
            "channel": r["channel"],
            "device_id": r["device_id"],
            "country": r["country"],
            "installments": r["installments"],
            "currency": "EUR",
            "card_hash": r["card_hash"],
        }


def _purchases(rng: np.random.Generator, n: int) -> tuple[pa.Table, list]:
    customers = [f"c{i:09d}" for i in rng.integers(0, CUSTOMERS + 300, n)]  # some unknown
    at = [
        datetime(START.year, START.month, START.day, 7, tzinfo=UTC) + timedelta(seconds=int(s))
        for s in rng.integers(0, (DAYS - 1) * 86_400, n)
    ]
    bnpl = rng.random(n) < 0.4
    fraud = rng.random(n) < 0.05
    default = bnpl & (rng.random(n) < 0.12)
    amounts = np.where(fraud | default, rng.lognormal(5, 1, n), rng.lognormal(3.5, 1, n))
    table = pa.table(
        {
            "transaction_id": [f"t{i:06d}" for i in range(n)],
            "customer_id": customers,
            "event_ts": pa.array(at, pa.timestamp("us", "UTC")),
            "amount": pa.array([f"{a:.2f}" for a in amounts]).cast(pa.decimal128(18, 2)),
            "currency": ["EUR"] * n,
            "merchant_id": ["m1"] * n,
            "merchant_category": np.where(fraud, "crypto", rng.choice(["grocery", "travel"], n)),
            "channel": rng.choice(["online", "pos", "app"], n),
            "device_id": rng.choice(["dev-1", "dev-2", None], n),
            "country": rng.choice(["US", "DE"], n),
            "installments": pa.array(np.where(bnpl, 3, 1), pa.int16()),
            "card_hash": ["ab" * 32] * n,
        }
    )
    labels = [(f"t{i:06d}", "fraud", at[i]) for i in np.flatnonzero(fraud)]
    labels += [(f"t{i:06d}", "default", at[i]) for i in np.flatnonzero(default)]
    return table, labels


def build(folder: Path, feature_set: FeatureSet) -> ServingEnv:
    lakehouse = Lakehouse(root_uri=str(folder / "lakehouse"))
    rng = np.random.default_rng(17)
    purchases, labels = _purchases(rng, 9000)
    days = pc.cast(purchases["event_ts"], pa.date32())
    for offset in range(DAYS):
        day = START + timedelta(days=offset)
        part = purchases.filter(pc.equal(days, pa.scalar(day, pa.date32())))
        if part.num_rows:
            lakehouse.replace_day(TRANSACTIONS, part, "event_date", day)
        snapshot = snapshot_table(feature_set, CUSTOMERS, day, seed=offset)
        lakehouse.replace_partitions(
            CUSTOMER_FEATURES, snapshot, ["as_of_date"], f"as_of_date = '{day}'"
        )
    label_table = pa.table(
        {
            "transaction_id": [t for t, _, _ in labels],
            "label": [k for _, k, _ in labels],
            "label_ts": pa.array(
                [a + timedelta(days=1) for _, _, a in labels], pa.timestamp("us", "UTC")
            ),
        }
    )
    lakehouse.replace_day(LABELS, label_table, "label_date", START + timedelta(days=DAYS + 5))
    window = TrainingWindow(
        START,
        START + timedelta(days=DAYS - 2),
        datetime(2026, 6, 1, tzinfo=UTC),
        maturity_days={"fraud": 2, "default": 2},
        valid_weeks=1,
        test_weeks=1,
    )
    training = build_training_set(lakehouse, feature_set, window)
    tracking = f"sqlite:///{folder / 'mlflow.db'}"
    for target in ("fraud", "default"):
        register(training, feature_set, tracking, folder, target, lakehouse=lakehouse)

    redis = LocalRedis(folder / "redis").start()
    load_served_snapshot(redis.client(), feature_set)
    return ServingEnv(
        tracking,
        lakehouse,
        training,
        purchases.select([*TRANSACTION_COLUMNS, "card_hash"]),
        redis,
        feature_set,
        str(folder / "inference_log"),
    )


def load_served_snapshot(client, feature_set: FeatureSet) -> None:
    """The served partition (SERVED_AS_OF) as a generation in the Redis of ``client``."""
    snapshot = snapshot_table(feature_set, CUSTOMERS, SERVED_AS_OF, seed=DAYS - 2)
    OnlineStore(client, feature_set.version).write_generation(
        [with_digests(snapshot)],
        feature_set=feature_set,
        customers=CUSTOMERS,
        as_of=datetime(SERVED_AS_OF.year, SERVED_AS_OF.month, SERVED_AS_OF.day, tzinfo=UTC),
    )


def register(
    training: pa.Table,
    feature_set,
    tracking: str,
    folder: Path,
    target: str,
    params=None,
    lakehouse: Lakehouse | None = None,
) -> str:
    """Train, register and gate one target's bundle (with the reference snapshot for drift
    when the lakehouse is given); returns its version. MLflow's run API sets the tracking URI
    in os.environ: it is put back, so the test registry does not leak into other tests."""
    import os

    from assets.training import models

    saved_uri = os.environ.get("MLFLOW_TRACKING_URI")

    previous = dict(models.PARAMS)
    models.PARAMS.update(params or {})
    try:
        bundle, trained = train_bundle(
            training, target, feature_set, table_vocabularies(training), 6.0
        )
    finally:
        models.PARAMS.clear()
        models.PARAMS.update(previous)
    newest = pc.max(training["snapshot_as_of"]).as_py().date()
    reference = snapshot_reference(lakehouse, feature_set, newest) if lakehouse else None
    version, _ = log_and_register(
        bundle,
        trained,
        training_hash="test",
        model_name=f"risk_{target}",
        tracking_uri=tracking,
        artifact_root=str(folder / "artifacts"),
        snapshot_reference=reference,
    )
    gate(f"risk_{target}", version, trained["behavioural"], training, tracking_uri=tracking)
    if saved_uri is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved_uri
    return version
