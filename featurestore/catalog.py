"""What the feature store serves, for people: every snapshot column the registry (the dbt
marts' documented columns, ``featurestore/registry.py``) knows, described: the customer's, then
the device's, merchant's and card's under their prefix (``device_distinct_customers_7d``), the
names ``historical_features`` takes."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from featurestore.historical import entity_features
from featurestore.registry import ENTITY_MARTS, MARTS, load_feature_set
from resources.dbt_cli import DBT_PROJECT_DIR
from riskcore.feature_set import FeatureColumn, FeatureSet


@dataclass(frozen=True)
class FeatureInfo:
    name: str  # as historical_features takes it: another entity's with its prefix
    entity: str  # customer | device | merchant | card: whose snapshot holds it
    description: str
    data_type: str  # as the mart declares it
    kind: str  # numeric | categorical | text | text_list
    role: str  # feature (a model input) | context (serving reads it, e.g. known devices)
    window: str | None  # the look-back, e.g. 30d
    categories: tuple[str, ...] | None
    grows_with_time: bool  # an age: drift measures it like with like
    feature_set_version: str
    dbt_model: str  # the mart that publishes it (its rollups come from intermediate models)
    sql: str  # that model's file, relative to the repository


@cache
def _mart_sql(entity: str) -> Path:
    """The file of the mart that publishes ``entity``'s features (looked up once)."""
    return next((DBT_PROJECT_DIR / "models").rglob(f"{MARTS[entity]}.sql"))


def _info(column: FeatureColumn, feature_set: FeatureSet, entity: str = "customer") -> FeatureInfo:
    mart_sql = _mart_sql(entity)
    return FeatureInfo(
        column.name if entity == "customer" else f"{entity}_{column.name}",
        entity,
        column.description,
        column.data_type,
        column.kind,
        column.role,
        column.window,
        column.categories,
        column.grows_with_time,
        feature_set.version,
        MARTS[entity],
        str(mart_sql.relative_to(DBT_PROJECT_DIR.parent)),
    )


def features() -> list[FeatureInfo]:
    """Every servable column: the customer's model features and context columns, then each
    other entity's features."""
    feature_set = load_feature_set()
    out = [_info(c, feature_set) for c in (*feature_set.features, *feature_set.context)]
    for entity in ENTITY_MARTS:
        entity_set = load_feature_set(entity=entity)
        out += [_info(c, entity_set, entity) for c in entity_set.features]
    return out


def feature(name: str) -> FeatureInfo:
    """One feature by name (another entity's with its prefix); an unknown name fails naming
    the closest known ones."""
    feature_set = load_feature_set()
    customer, by_entity = entity_features(feature_set, [name])
    if customer:
        return _info(customer[0], feature_set)
    entity, (column,) = next(iter(by_entity.items()))
    return _info(column, load_feature_set(entity=entity), entity)
