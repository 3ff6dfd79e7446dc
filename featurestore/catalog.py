"""What the feature store serves, for people: every snapshot column the registry (the dbt
mart's documented columns, ``featurestore/registry.py``) knows, described."""

from __future__ import annotations

from dataclasses import dataclass

from featurestore.historical import resolve_features
from featurestore.registry import MART, load_feature_set
from resources.dbt_cli import DBT_PROJECT_DIR
from riskcore.feature_set import FeatureColumn, FeatureSet

MART_SQL = DBT_PROJECT_DIR / "models" / "marts" / f"{MART}.sql"


@dataclass(frozen=True)
class FeatureInfo:
    name: str
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


def _info(column: FeatureColumn, feature_set: FeatureSet) -> FeatureInfo:
    return FeatureInfo(
        column.name,
        column.description,
        column.data_type,
        column.kind,
        column.role,
        column.window,
        column.categories,
        column.grows_with_time,
        feature_set.version,
        MART,
        str(MART_SQL.relative_to(DBT_PROJECT_DIR.parent)),
    )


def features() -> list[FeatureInfo]:
    """Every servable column: the model features, then the context columns."""
    feature_set = load_feature_set()
    return [_info(c, feature_set) for c in (*feature_set.features, *feature_set.context)]


def feature(name: str) -> FeatureInfo:
    """One feature by name; an unknown name fails naming the closest known ones."""
    feature_set = load_feature_set()
    return _info(resolve_features(feature_set, [name])[0], feature_set)
