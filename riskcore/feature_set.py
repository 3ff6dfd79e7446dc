"""A snapshot feature set as plain data: what serving, training and the online store share.

The list itself is defined once, in the dbt mart's yml; ``featurestore/registry.py`` reads it
from the dbt manifest and derives its version. This module only describes it, so that serving
can carry it (in a model's spec, in the online store's layout key) without dbt or Dagster.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

# Each entity's key: the column of its snapshot table, and the transaction's (and the score
# request's) field naming it. Cards are keyed by the card's keyed hash, never the number.
KEYS = {
    "customer": "customer_id",
    "device": "device_id",
    "merchant": "merchant_id",
    "card": "card_hash",
}
ENTITY_KEYS = {e: key for e, key in KEYS.items() if e != "customer"}

NUMERIC_TYPES = ("integer", "bigint", "smallint", "double", "float", "real", "decimal")


@dataclass(frozen=True)
class FeatureColumn:
    name: str
    data_type: str
    role: str  # key | feature (a model input) | context (serving needs it, e.g. known devices)
    window: str | None = None
    description: str = ""
    categories: tuple[str, ...] | None = None  # the vocabulary of a categorical feature
    grows_with_time: bool = False  # an age (meta drift: age): +1 a day for everyone

    @property
    def kind(self) -> str:
        """numeric | categorical | text | text_list: how the value is stored and decoded."""
        base = self.data_type.lower()
        if base.endswith("[]"):
            return "text_list"
        if base.startswith(NUMERIC_TYPES):
            return "numeric"
        if self.categories is not None:
            return "categorical"
        return "text"


@dataclass(frozen=True)
class FeatureSet:
    version: str
    columns: tuple[FeatureColumn, ...]

    @property
    def features(self) -> tuple[FeatureColumn, ...]:
        return tuple(c for c in self.columns if c.role == "feature")

    @property
    def context(self) -> tuple[FeatureColumn, ...]:
        return tuple(c for c in self.columns if c.role == "context")

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "columns": [asdict(c) for c in self.columns]})

    @classmethod
    def from_json(cls, text: str | bytes) -> FeatureSet:
        doc = json.loads(text)
        columns = tuple(
            FeatureColumn(
                **{**c, "categories": tuple(c["categories"]) if c["categories"] else None}
            )
            for c in doc["columns"]
        )
        return cls(doc["version"], columns)
