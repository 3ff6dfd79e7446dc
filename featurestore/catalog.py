"""What the feature store serves, for people: every snapshot column the registry (the dbt
mart's documented columns, ``featurestore/registry.py``) knows, described."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from featurestore.historical import FeatureStoreError
from featurestore.registry import MART, load_feature_set
from resources.dbt_cli import DBT_PROJECT_DIR

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
    dbt_model: str  # the model that computes it
    sql: str  # that model's file, relative to the repository


def features() -> list[FeatureInfo]:
    """Every servable column: the model features, then the context columns."""
    feature_set = load_feature_set()
    sql = str(MART_SQL.relative_to(DBT_PROJECT_DIR.parent))
    return [
        FeatureInfo(
            c.name,
            c.description,
            c.data_type,
            c.kind,
            c.role,
            c.window,
            c.categories,
            c.grows_with_time,
            feature_set.version,
            MART,
            sql,
        )
        for c in (*feature_set.features, *feature_set.context)
    ]


def feature(name: str) -> FeatureInfo:
    """One feature by name; an unknown name fails naming the closest known ones."""
    known = {f.name: f for f in features()}
    if name not in known:
        hints = difflib.get_close_matches(name, known, n=3)
        raise FeatureStoreError(
            f"unknown feature {name!r}" + (f" (did you mean {', '.join(hints)}?)" if hints else "")
        )
    return known[name]
