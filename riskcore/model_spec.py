"""A model's feature spec (logged with it) and the one way to build its input.

Serving trusts the spec: which features, in which order, with which vocabularies, from which
feature-set versions. Three tiers (docs/architecture.md#model-tiers):

* behavioural: a customer the snapshot knows: the customer's snapshot features (as the online
  codec decodes them), every transaction-time feature, the customer's and the device's
  real-time features, and the device's, merchant's and card's snapshot features;
* transaction_only: no customer history (a new customer, a ring's fresh account): what the
  transaction itself says, the device's real-time features and the device's, merchant's and
  card's snapshot features;
* request_only: the store cannot be read (down, slow, overloaded): the transaction alone.

Entity features come last, each entity's in its feature set's order; an entity the snapshot
does not hold gives NaN (LightGBM's missing), as in training.
"""

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from riskcore.codec import OnlineRecord
from riskcore.realtime import ALL_REALTIME_FEATURES, DEVICE_REALTIME_FEATURES, REALTIME_FEATURES
from riskcore.transaction_features import (
    CATEGORICAL,
    REQUEST_FEATURES,
    TRANSACTION_FEATURES,
    transaction_features,
)

BEHAVIOURAL, TRANSACTION_ONLY, REQUEST_ONLY = "behavioural", "transaction_only", "request_only"
KINDS = (BEHAVIOURAL, TRANSACTION_ONLY, REQUEST_ONLY)


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
    # Real-time velocity features (riskcore/realtime.py): the customer's (behavioural models)
    # and the device's; empty in specs logged before they existed.
    realtime_features: tuple[str, ...] = ()
    # Other entities' snapshot features, named with the entity (``device_distinct_customers_7d``),
    # and each entity's feature-set version; empty in specs logged before them.
    entity_features: tuple[str, ...] = ()
    entity_feature_sets: dict[str, str] = field(default_factory=dict)
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
        return (
            self.snapshot_features
            + self.transaction_features
            + self.realtime_features
            + self.entity_features
        )

    @cached_property
    def width(self) -> int:
        return len(self.feature_names)

    @cached_property
    def entity_columns(self) -> dict[str, tuple[str, ...]]:
        """Per entity, the names of its features in its own records, in the spec's order."""
        return {
            entity: tuple(
                n.removeprefix(f"{entity}_")
                for n in self.entity_features
                if n.startswith(f"{entity}_")
            )
            for entity in self.entity_feature_sets
        }

    @cached_property
    def realtime_positions(self) -> list[int]:
        """Where the spec's real-time features sit in ``ALL_REALTIME_FEATURES``."""
        return [ALL_REALTIME_FEATURES.index(n) for n in self.realtime_features]

    @classmethod
    def build(
        cls,
        target: str,
        kind: str,
        feature_set,
        vocabularies: Mapping,
        lag_hours: float,
        entities: Mapping = {},
    ) -> "ModelSpec":
        behavioural = kind == BEHAVIOURAL
        snapshot = tuple(c.name for c in feature_set.features) if behavioural else ()
        transaction = TRANSACTION_FEATURES if behavioural else REQUEST_FEATURES
        categorical = (
            tuple(c.name for c in feature_set.features if c.categories and c.name in snapshot)
            + CATEGORICAL
        )
        read = {} if kind == REQUEST_ONLY else entities
        realtime = (REALTIME_FEATURES if behavioural else ()) + (
            DEVICE_REALTIME_FEATURES if read else ()
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
            realtime,
            tuple(f"{e}_{c.name}" for e, fs in read.items() for c in fs.features),
            {e: fs.version for e, fs in read.items()},
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        doc = json.loads(text)
        tuples = (
            "snapshot_features",
            "transaction_features",
            "categorical",
            "realtime_features",
            "entity_features",
        )
        doc |= {k: tuple(doc[k]) for k in tuples if k in doc}
        doc["vocabularies"] = {k: tuple(v) for k, v in doc["vocabularies"].items()}
        return cls(**doc)


def model_input(
    spec: ModelSpec,
    txn,
    record: OnlineRecord | None,
    realtime: np.ndarray | None = None,
    entities: Mapping[str, OnlineRecord | None] = {},
) -> np.ndarray:
    """The spec's input vector for one transaction: what ``/score`` feeds the model, equal to
    the training row of the same purchase (tests/test_point_in_time.py). ``realtime``: the
    purchase's ``ALL_REALTIME_FEATURES`` (a spec that reads real-time features needs them);
    ``entities``: the device's, merchant's and card's records (absent or None: NaN)."""
    out = np.empty(spec.width)  # filled part by part: no per-part arrays to join
    at = 0
    if spec.kind == BEHAVIOURAL:
        if record is None:
            raise ValueError("a behavioural model needs the customer's snapshot")
        at = len(spec.snapshot_features)
        out[:at] = record.features[record.codec.positions(spec.snapshot_features)]
    computed = transaction_features(txn, record, spec.vocabularies)
    if spec.transaction_features != TRANSACTION_FEATURES:  # an older spec: pick by name
        by_name = dict(zip(TRANSACTION_FEATURES, computed, strict=True))
        computed = [by_name[name] for name in spec.transaction_features]
    out[at : at + len(computed)] = computed
    at += len(computed)
    if spec.realtime_features:
        if realtime is None:
            raise ValueError("this model reads real-time features: look them up first")
        if spec.realtime_features != ALL_REALTIME_FEATURES:  # another list: pick by name
            realtime = realtime[spec.realtime_positions]
        out[at : at + len(realtime)] = realtime
        at += len(realtime)
    for entity, names in spec.entity_columns.items():
        found = entities.get(entity)
        end = at + len(names)
        out[at:end] = np.nan if found is None else found.features[found.codec.positions(names)]
        at = end
    if at != spec.width:  # a spec whose parts do not add up: never score what was not filled
        raise ValueError(f"{spec.kind} {spec.target} input filled {at} of {spec.width} features")
    return out
