"""Snapshot tables shaped exactly like the mart (the registry's columns and types) with random
values: for online-store tests and benchmarks that need many customers without running dbt."""

from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa

from riskcore.feature_set import FeatureColumn, FeatureSet

_ARROW_TYPES = {
    "varchar": pa.string(),
    "integer": pa.int32(),
    "double": pa.float64(),
    "decimal(18,2)": pa.decimal128(18, 2),
    "date": pa.date32(),
    "timestamp with time zone": pa.timestamp("us", "UTC"),
    "varchar[]": pa.list_(pa.string()),
}


def cents_to_decimal(cents: np.ndarray) -> pa.Array:
    """Integer cents as DECIMAL(18,2), built from the unscaled int128 values directly."""
    cents = np.asarray(cents, np.int64)
    unscaled = np.stack([cents, np.where(cents < 0, -1, 0)], axis=1)  # int128, little-endian
    return pa.Array.from_buffers(pa.decimal128(18, 2), len(cents), [None, pa.py_buffer(unscaled)])


def arrow_type(column: FeatureColumn) -> pa.DataType:
    return _ARROW_TYPES[column.data_type]


def _values(column: FeatureColumn, n: int, rng: np.random.Generator) -> pa.Array:
    kind, null = column.kind, rng.random(n) < 0.05
    if column.categories is not None:
        return pa.array(rng.choice(list(column.categories), n))
    if kind == "text_list":
        sizes = rng.integers(0, 5, n)
        names = pa.array([f"dev-{i}" for i in rng.integers(0, 10**9, int(sizes.sum())).tolist()])
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), names)
    if kind == "text":
        return pa.array(rng.choice(["US", "DE", "GB", "FR"], n), mask=null)
    if column.data_type == "integer":
        return pa.array(rng.poisson(5, n).astype(np.int32))
    if column.data_type.startswith("decimal"):
        return cents_to_decimal(rng.lognormal(8, 1.5, n).astype(np.int64))
    return pa.array(rng.lognormal(0, 1, n), mask=null)


def snapshot_table(
    feature_set: FeatureSet, customers: int, as_of_date: date, seed: int = 0, prefix: str = "c"
) -> pa.Table:
    rng = np.random.default_rng(seed)
    as_of = datetime(as_of_date.year, as_of_date.month, as_of_date.day, tzinfo=UTC)
    columns = {}
    for column in feature_set.columns:
        if column.role == "key" and column.name.endswith(("_id", "_hash")):  # any entity's
            values = pa.array([f"{prefix}{i:09d}" for i in range(customers)])
        elif column.name == "as_of":
            values = pa.array([as_of] * customers, pa.timestamp("us", "UTC"))
        elif column.name == "as_of_date":
            values = pa.array([as_of_date] * customers, pa.date32())
        else:
            values = _values(column, customers, rng)
        columns[column.name] = values.cast(arrow_type(column))
    return pa.table(columns)
