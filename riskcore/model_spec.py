"""A model's feature spec (logged with it) and the one way to build its input.

Serving trusts the spec: which features, in which order, with which vocabularies, from which
feature-set version. A behavioural model reads snapshot features (as the online codec decodes
them) then every transaction-time feature; a transaction-only model reads only what the
transaction itself says (it serves unknown customers and store outages, where nothing is
compared with a snapshot).
"""

import json
from dataclasses import asdict, dataclass

import numpy as np

from riskcore.codec import OnlineRecord
from riskcore.realtime import REALTIME_FEATURES
from riskcore.transaction_features import (
    CATEGORICAL,
    REQUEST_FEATURES,
    TRANSACTION_FEATURES,
    transaction_features,
)

BEHAVIOURAL, TRANSACTION_ONLY = "behavioural", "transaction_only"


@dataclass(frozen=True)
class ModelSpec:
    target: str  # fraud | default
    kind: str  # behavioural | transaction_only
    feature_set_version: str
    snapshot_features: tuple[str, ...]  # registry order; empty for transaction_only
    transaction_features: tuple[str, ...]
    categorical: tuple[str, ...]  # LightGBM categorical features (codes, NaN = missing)
    vocabularies: dict  # transaction field -> tuple of values (the codes' meaning)
    availability_lag_hours: float
    # Real-time velocity features (serving/realtime.py), behavioural models only; empty in
    # specs logged before they existed.
    realtime_features: tuple[str, ...] = ()
    as_of_semantics: str = (
        "snapshot as_of = partition day + 1 00:00 UTC, usable from as_of + availability lag; "
        "a purchase uses the newest usable snapshot; recency aged to the purchase time"
    )
    missing_value: str = "NaN (LightGBM's missing): unknown customer, null feature, unseen code"
    dtype: str = (
        "float64 input; snapshot features are float32 values (the online codec's dtype), "
        "categorical features their vocabulary index"
    )

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.snapshot_features + self.transaction_features + self.realtime_features

    @classmethod
    def build(cls, target, kind, feature_set, vocabularies, lag_hours) -> "ModelSpec":
        behavioural = kind == BEHAVIOURAL
        snapshot = tuple(c.name for c in feature_set.features) if behavioural else ()
        transaction = TRANSACTION_FEATURES if behavioural else REQUEST_FEATURES
        categorical = (
            tuple(c.name for c in feature_set.features if c.categories and c.name in snapshot)
            + CATEGORICAL
        )
        return cls(
            target,
            kind,
            feature_set.version,
            snapshot,
            transaction,
            categorical,
            {k: tuple(v) for k, v in vocabularies.items()},
            lag_hours,
            REALTIME_FEATURES if behavioural else (),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        doc = json.loads(text)
        tuples = ("snapshot_features", "transaction_features", "categorical", "realtime_features")
        doc |= {k: tuple(doc[k]) for k in tuples if k in doc}
        doc["vocabularies"] = {k: tuple(v) for k, v in doc["vocabularies"].items()}
        return cls(**doc)


def model_input(
    spec: ModelSpec, txn, record: OnlineRecord | None, realtime: np.ndarray | None = None
) -> np.ndarray:
    """The spec's input vector for one transaction: what ``/score`` feeds the model, equal to
    the training row of the same purchase (tests/test_point_in_time.py). ``realtime``: the
    purchase's ``REALTIME_FEATURES`` (a behavioural spec that reads them needs them)."""
    computed = transaction_features(txn, record, spec.vocabularies)
    if spec.transaction_features != TRANSACTION_FEATURES:  # an older spec: pick by name
        by_name = dict(zip(TRANSACTION_FEATURES, computed, strict=True))
        computed = np.array([by_name[name] for name in spec.transaction_features])
    if spec.kind == TRANSACTION_ONLY:
        return computed
    if record is None:
        raise ValueError("a behavioural model needs the customer's snapshot")
    snapshot = record.features[record.codec.positions(spec.snapshot_features)]
    if not spec.realtime_features:
        return np.concatenate([snapshot.astype(np.float64), computed])
    if realtime is None:
        raise ValueError("this model reads real-time features: look them up first")
    if spec.realtime_features != REALTIME_FEATURES:  # another list: pick by name
        realtime = realtime[[REALTIME_FEATURES.index(n) for n in spec.realtime_features]]
    return np.concatenate([snapshot.astype(np.float64), computed, realtime])
