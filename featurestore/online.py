"""The online store as serving reads it, for people: a few customers' values, and the store's
state (which generation serves, of which as_of, how many customers, until when)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from math import nan
from typing import Any

import polars as pl

from featurestore.historical import resolve_features
from featurestore.registry import load_feature_set
from resources.lakehouse import KEYS
from resources.online_store import from_environment
from riskcore.codec import OnlineRecord


def online_features(
    customer_ids: Sequence[str], features: Sequence[str] | None = None, entity: str = "customer"
) -> pl.DataFrame:
    """The serving generation's values for ``customer_ids`` (one round trip, one generation),
    decoded: ``source`` is ``online``, or why there is no record (``unknown_customer``,
    ``no_generation``, ``expired``), with the record's ``as_of``. Numbers are the float32 the
    models read, NaN for null (as ``historical_features`` gives them); categorical values by
    name. ``entity``: another entity's (``device``, ``merchant``, ``card``): the ids are its
    keys, the features its own (unprefixed), from its own generations."""
    feature_set = load_feature_set(entity=entity)
    wanted = resolve_features(feature_set, features)
    store = from_environment().store(feature_set.version)
    ids = [customer_ids] if isinstance(customer_ids, str) else list(customer_ids)
    numeric = {c.name for c in wanted if c.kind == "numeric"}
    key = KEYS[entity]
    rows = []
    for found in store.get_many(ids):
        row: dict[str, Any] = {key: found.customer_id}
        if isinstance(found, OnlineRecord):
            values = found.feature_dict() | found.context
            row |= {"source": "online", "as_of": found.as_of}
            row |= {c.name: values.get(c.name) for c in wanted}
        else:
            row |= {"source": found.reason, "as_of": None} | {c.name: None for c in wanted}
        rows.append({k: nan if k in numeric and v is None else v for k, v in row.items()})
    schema = {key: pl.String, "source": pl.String, "as_of": pl.Datetime("us", "UTC")}
    schema |= {
        c.name: pl.Float32
        if c.kind == "numeric"
        else pl.List(pl.String)
        if c.kind == "text_list"
        else pl.String
        for c in wanted
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def store_status() -> dict[str, Any]:
    """The newest generation loaded, the one readers use (they differ until the newest is
    available), and any as_of an operator pinned after a rollback."""
    feature_set = load_feature_set()
    store = from_environment().store(feature_set.version)
    newest, serving = store.current_generation(fresh=True), store.serving_generation(fresh=True)
    return {
        "feature_set_version": feature_set.version,
        "newest": asdict(newest) if newest else None,
        "serving": asdict(serving) if serving else None,
        "pinned": store.pinned(),
    }
