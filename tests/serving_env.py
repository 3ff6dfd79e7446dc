"""A real serving environment for the tests, built as production builds it: customer, device,
merchant and card snapshots and purchases in Delta -> the point-in-time training set -> both
targets' models (every tier) trained, registered in a SQLite MLflow registry and promoted by
the gate -> each entity's snapshot generation in a real redis-server. Small (1,500 customers,
a month), so a test session builds it in seconds. Some customers, devices, merchants and
cards are in no snapshot (unknown), some purchases name no device or card."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
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
from featurestore.registry import load_entity_feature_sets
from resources.lakehouse import CUSTOMER_FEATURES, KEYS, LABELS, SNAPSHOTS, TRANSACTIONS, Lakehouse
from resources.local_redis import LocalRedis
from riskcore.codec import with_digests
from riskcore.feature_set import FeatureSet
from riskcore.online_store import OnlineStore
from serving.config import ServingConfig, Thresholds
from tests.snapshot_tables import snapshot_table

START = date(2026, 3, 1)
DAYS = 30
CUSTOMERS = 1500
# Each entity's ids in the purchases, and how many of them (the first) its snapshots hold
DEVICES, MERCHANTS, CARDS = (
    [f"dev-{i}" for i in range(400)],
    [f"m{i}" for i in range(60)],
    [hashlib.sha256(f"card-{i}".encode()).hexdigest() for i in range(2000)],
)
HELD = {"device": (DEVICES, 300), "merchant": (MERCHANTS, 50), "card": (CARDS, 1600)}
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
    entities: dict[str, FeatureSet] = field(default_factory=dict)

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
            "merchant_id": r["merchant_id"],
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
            "merchant_id": rng.choice(MERCHANTS, n),
            "merchant_category": np.where(fraud, "crypto", rng.choice(["grocery", "travel"], n)),
            "channel": rng.choice(["online", "pos", "app"], n),
            "device_id": np.where(rng.random(n) < 0.1, None, rng.choice(DEVICES, n)),
            "country": rng.choice(["US", "DE"], n),
            "installments": pa.array(np.where(bnpl, 3, 1), pa.int16()),
            "card_hash": np.where(rng.random(n) < 0.1, None, rng.choice(CARDS, n)),
        }
    )
    labels = [(f"t{i:06d}", "fraud", at[i]) for i in np.flatnonzero(fraud)]
    labels += [(f"t{i:06d}", "default", at[i]) for i in np.flatnonzero(default)]
    return table, labels


def entity_snapshot(entity: str, feature_set: FeatureSet, day: date, seed: int) -> pa.Table:
    """An entity's snapshot of ``day``: random values for the ids it holds (``HELD``)."""
    ids, held = HELD[entity]
    table = snapshot_table(feature_set, held, day, seed=seed)
    key = KEYS[entity]
    return table.set_column(table.schema.get_field_index(key), key, pa.array(ids[:held]))


def build(folder: Path, feature_set: FeatureSet) -> ServingEnv:
    lakehouse = Lakehouse(root_uri=str(folder / "lakehouse"))
    entities = load_entity_feature_sets()
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
        for k, (entity, entity_set) in enumerate(entities.items(), start=1):
            lakehouse.replace_partitions(
                SNAPSHOTS[entity],
                entity_snapshot(entity, entity_set, day, seed=1000 * k + offset),
                ["as_of_date"],
                f"as_of_date = '{day}'",
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
    training = build_training_set(lakehouse, feature_set, window, entities)
    tracking = f"sqlite:///{folder / 'mlflow.db'}"
    for target in ("fraud", "default"):
        register(training, feature_set, tracking, folder, target, lakehouse=lakehouse)

    redis = LocalRedis(folder / "redis").start()
    load_served_snapshot(redis.client(), feature_set, entities)
    return ServingEnv(
        tracking,
        lakehouse,
        training,
        purchases.select(TRANSACTION_COLUMNS),
        redis,
        feature_set,
        str(folder / "inference_log"),
        entities,
    )


def load_served_snapshot(
    client, feature_set: FeatureSet, entities: dict[str, FeatureSet] | None = None
) -> None:
    """The served partition (SERVED_AS_OF) as a generation in the Redis of ``client``: the
    customers' and each of ``entities``'."""
    as_of = datetime(SERVED_AS_OF.year, SERVED_AS_OF.month, SERVED_AS_OF.day, tzinfo=UTC)
    snapshot = snapshot_table(feature_set, CUSTOMERS, SERVED_AS_OF, seed=DAYS - 2)
    OnlineStore(client, feature_set.version).write_generation(
        [with_digests(snapshot)], feature_set=feature_set, customers=CUSTOMERS, as_of=as_of
    )
    for k, (entity, entity_set) in enumerate((entities or {}).items(), start=1):
        table = entity_snapshot(entity, entity_set, SERVED_AS_OF, seed=1000 * k + DAYS - 2)
        OnlineStore(client, entity_set.version).write_generation(
            [with_digests(table, key=KEYS[entity])],
            feature_set=entity_set,
            customers=table.num_rows,
            as_of=as_of,
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
            training,
            target,
            feature_set,
            table_vocabularies(training),
            6.0,
            load_entity_feature_sets(),
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
