"""The online store's record format: one compact binary value per customer.

A record is laid out by its feature set (little-endian)::

    tag       2 bytes     the layout's fingerprint: a record never decodes against another layout
    as_of     uint32      snapshot time, seconds since the epoch (UTC): a reader knows its age
    features  float32 x k the model features in registry order; NaN is null; a categorical
                          feature holds the index of its value in the registry's vocabulary
    context   per column  text: uint8 length + UTF-8 (255 = null);
                          text list: uint8 count (255 = null) + a uint32 fingerprint per item
                          (the items may arrive as strings or as their SHA-256 digests)

float32 is the dtype serving decodes, so training passes snapshot values through
``feature_matrix`` too and sees exactly what serving will. A text list is stored as
fingerprints (first 4 bytes of the SHA-256 of each item): serving only asks "is this device
among the known ones?", 4 bytes answer it (false match ~1e-9), and no device id is stored.

Where a record lives: the SHA-256 digest of the customer id. Its first bits pick the bucket (one
Redis hash of ~100 customers, compact as a listpack) and bytes 8-14 name the field in it.
Sorting customers by digest therefore groups them by bucket, whatever the bucket count.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskcore.feature_set import FeatureColumn, FeatureSet

HEADER = struct.Struct("<2sI")  # tag, as_of
NULL_LENGTH = 255
_EXPECTED = {"text_list": "a list of strings", "text": "a string", "numeric": "a number"}
FIELD_BYTES = slice(8, 14)


class LayoutMismatch(ValueError):
    """A record written with another feature set's layout (never decoded, never served)."""


class InvalidValue(ValueError):
    """A given value does not fit its column (``field`` names it, as ``shown_name`` shows
    the caller's text; the value is never repeated)."""

    def __init__(self, field: str, message: str):
        field = shown_name(field)
        super().__init__(f"{field}: {message}")
        self.field = field


_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def shown_name(name: str) -> str:
    """A caller's feature name as an error may repeat it: one that could be a column name,
    else a placeholder (an error never echoes the caller's own text back)."""
    return name if _NAME.fullmatch(name) else "(a name that is not a column name)"


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def fingerprint(text: str) -> int:
    """What a text-list context column stores of each item (e.g. a device id)."""
    return int.from_bytes(digest(text)[:4], "little")


def slot(customer_id: str, bucket_bits: int) -> tuple[int, bytes]:
    """(bucket, field) of one customer."""
    d = digest(customer_id)
    bucket = int.from_bytes(d[:8], "big") >> (64 - bucket_bits) if bucket_bits else 0
    return bucket, d[FIELD_BYTES]


def slots(digests: pa.Array | pa.ChunkedArray, bucket_bits: int) -> tuple[np.ndarray, list]:
    """``slot`` for a column of SHA-256 digests (what DuckDB's ``unhex(sha256(x))`` gives)."""
    d = _fixed_width_bytes(digests, 32)
    top = d[:, :8].copy().view(">u8").ravel()
    buckets = (top >> np.uint64(64 - bucket_bits)) if bucket_bits else np.zeros_like(top)
    return buckets.astype(np.int64), d[:, FIELD_BYTES].copy().view("V6").ravel().tolist()


def with_digests(table: pa.Table, key: str = "customer_id") -> pa.Table:
    """Add the ``customer_digest`` column (the digest of any entity's ``key``) in Python (small
    tables; the materialization asks DuckDB for it instead, ~30x faster)."""
    column = pa.array([digest(c) for c in table[key].to_pylist()], pa.binary())
    return table.append_column("customer_digest", column)


@dataclass(slots=True)
class OnlineRecord:
    """One customer's snapshot as served."""

    customer_id: str
    as_of: datetime
    features: np.ndarray  # float32, registry order
    context: dict
    codec: RecordCodec

    def feature_dict(self) -> dict[str, object]:
        """Names to plain values (categorical decoded, null as None, floats as float32's
        shortest repr: 44.45, not 44.45000076293945): for people and JSON."""
        out: dict[str, object] = {}
        for column, value in zip(self.codec.features, self.features, strict=True):
            if value != value:  # NaN
                out[column.name] = None
            elif column.categories is not None:
                out[column.name] = column.categories[int(value)]
            else:
                out[column.name] = float(str(value))
        return out


class RecordCodec:
    """Packs snapshot rows of one feature set into records and back."""

    def __init__(self, feature_set: FeatureSet):
        self.feature_set = feature_set
        self.features = feature_set.features
        self.context = feature_set.context
        unknown = [c.name for c in self.context if c.kind not in ("text", "text_list")]
        if unknown:
            raise ValueError(f"context columns must be text or text lists: {unknown}")
        layout = repr([(c.name, c.kind, c.categories) for c in self.features + self.context])
        self.tag = hashlib.sha256(f"{feature_set.version}|{layout}".encode()).digest()[:2]
        self._context_kinds = tuple((c.name, c.kind == "text") for c in self.context)
        self.feature_names = tuple(c.name for c in self.features)
        self.feature_index = {name: i for i, name in enumerate(self.feature_names)}
        self._k = len(self.features)
        self._head = np.dtype([("tag", "V2"), ("as_of", "<u4"), ("features", "<f4", (self._k,))])
        self._head_size = self._head.itemsize
        self._positions: dict[tuple[str, ...], np.ndarray | slice] = {}

    def positions(self, names: tuple[str, ...]) -> np.ndarray | slice:
        """Where the named features sit in a record (cached: a model asks for the same ones);
        all of them in order (what a model usually reads): a slice, which takes no copy."""
        found = self._positions.get(names)
        if found is None:
            at = [self.feature_index[n] for n in names]
            whole = at == list(range(self._k))
            found = self._positions[names] = slice(None) if whole else np.array(at, int)
        return found

    # -- training and materialization (vectorized) ----------------------------------------

    def feature_matrix(self, table: pa.Table | pa.RecordBatch) -> np.ndarray:
        """The model features as serving decodes them: float32 (nearest; beyond its range,
        +-inf), NaN for null, categorical as the index in the vocabulary."""
        out = np.empty((table.num_rows, self._k), np.float32)
        for i, column in enumerate(self.features):
            values = table.column(column.name)
            if column.categories is not None:
                codes = pc.index_in(values, value_set=pa.array(column.categories))
                if codes.null_count != values.null_count:
                    bad = pc.filter(values, pc.and_(pc.is_null(codes), pc.is_valid(values)))
                    raise ValueError(
                        f"{column.name}: {bad[0]} is not in the registry's categories "
                        f"{column.categories}"
                    )
                values = codes
            out[:, i] = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        return out

    def encode(self, table: pa.Table | pa.RecordBatch) -> list[bytes]:
        """One record per row, in row order."""
        n = table.num_rows
        head = np.empty(n, self._head)
        head["tag"] = np.frombuffer(self.tag, "V2")[0]
        head["as_of"] = _epoch_seconds(table.column("as_of"))
        head["features"] = self.feature_matrix(table)
        parts = [_Ragged.fixed(head.view(np.uint8).reshape(n, self._head_size))]
        for column in self.context:
            parts.extend(_context_parts(column, table.column(column.name)))
        return _join_rows(parts, n)

    # -- serving (one record at a time) ---------------------------------------------------

    def from_values(self, customer_id: str, as_of: datetime, values: dict) -> OnlineRecord:
        """A record from named plain values (a request's what-if snapshot): features and
        context columns by name, absent ones null. ``InvalidValue`` names the bad field."""
        by_name = {c.name: c for c in self.features + self.context}
        unknown = sorted(set(values) - set(by_name))
        if unknown:
            raise InvalidValue(unknown[0], f"not a feature of {self.feature_set.version}")
        features = np.full(self._k, np.nan, np.float32)
        context: dict[str, object] = {c.name: None for c in self.context}
        for name, value in values.items():
            column = by_name[name]
            if value is None:
                continue
            if column.kind == "text_list" and isinstance(value, list):
                context[name] = tuple(fingerprint(str(v)) for v in value)
            elif column.kind == "text" and isinstance(value, str):
                context[name] = value
            elif column.categories is not None and value in column.categories:
                features[self.feature_index[name]] = column.categories.index(value)
            elif column.kind == "numeric" and isinstance(value, int | float):
                features[self.feature_index[name]] = value
            else:
                expected = _EXPECTED.get(column.kind, f"one of {column.categories}")
                raise InvalidValue(name, f"expected {expected}")
        return OnlineRecord(customer_id, as_of, features, context, self)

    def decode(self, customer_id: str, value: bytes) -> OnlineRecord:
        tag, as_of = HEADER.unpack_from(value)
        if tag != self.tag:
            raise LayoutMismatch(
                f"record of {customer_id!r} has layout {tag.hex()}, expected {self.tag.hex()} "
                f"({self.feature_set.version})"
            )
        features = np.frombuffer(value, np.float32, self._k, HEADER.size)
        pos = self._head_size
        context: dict[str, object] = {}
        for name, is_text in self._context_kinds:
            n = value[pos]
            pos += 1
            if n == NULL_LENGTH:
                context[name] = None
            elif is_text:
                context[name] = value[pos : pos + n].decode()
                pos += n
            else:
                context[name] = struct.unpack_from(f"<{n}I", value, pos)
                pos += 4 * n
        if pos != len(value):
            raise LayoutMismatch(f"record of {customer_id!r} has {len(value) - pos} extra bytes")
        return OnlineRecord(customer_id, _as_datetime(as_of), features, context, self)


@lru_cache(maxsize=64)
def _as_datetime(epoch_seconds: int) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


# -- vectorized helpers --------------------------------------------------------------------


@dataclass
class _Ragged:
    """One part of every record: row i is data[starts[i] : starts[i] + lengths[i]], or
    ``rows[i]`` when every row has the same width."""

    data: np.ndarray  # uint8
    starts: np.ndarray
    lengths: np.ndarray
    rows: np.ndarray | None = None

    @classmethod
    def fixed(cls, rows: np.ndarray) -> _Ragged:
        n, width = rows.shape
        return cls(rows.reshape(-1), np.arange(n) * width, np.full(n, width), rows)

    def take(self, rows: np.ndarray, width: int) -> np.ndarray:
        if self.rows is not None:
            return self.rows[rows]
        return self.data[self.starts[rows][:, None] + np.arange(width)]

    @classmethod
    def prefix(cls, lengths: np.ndarray) -> _Ragged:
        """The length/count byte in front of a variable part."""
        return cls(lengths.astype(np.uint8), np.arange(len(lengths)), np.ones(len(lengths), int))


def list_fingerprints(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A text-list column's items as the record stores them: their fingerprints, flat
    (uint32), and each row's item count (0 for a null list)."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    items = pc.list_flatten(values)
    if pa.types.is_binary(items.type):  # already SHA-256 digests (DuckDB computes them)
        prints = _fixed_width_bytes(items, 32)[:, :4].copy().view("<u4").ravel()
    else:  # each distinct item hashed once
        encoded = pc.dictionary_encode(items)
        distinct = np.array([fingerprint(x) for x in encoded.dictionary.to_pylist()], "<u4")
        prints = distinct[encoded.indices.to_numpy(zero_copy_only=False)]
    lengths = pc.fill_null(pc.list_value_length(values), 0).to_numpy(zero_copy_only=False)
    return prints, lengths.astype(np.int64)


def _context_parts(column: FeatureColumn, values: pa.ChunkedArray | pa.Array) -> list[_Ragged]:
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
    if column.kind == "text":
        data = pc.cast(values, pa.binary())
        lengths = pc.fill_null(pc.binary_length(data), 0).to_numpy(zero_copy_only=False)
        flat = np.frombuffer(data.buffers()[2] or b"", np.uint8)
        starts = np.frombuffer(data.buffers()[1], np.int32)[data.offset : data.offset + len(data)]
    else:
        prints, lengths = list_fingerprints(values)
        flat = prints.view(np.uint8)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) * 4
        lengths = lengths * 4
    count = lengths if column.kind == "text" else lengths // 4
    if count.max(initial=0) >= NULL_LENGTH:
        raise ValueError(f"{column.name}: a value is longer than {NULL_LENGTH - 1} items")
    prefix = np.where(valid, count, NULL_LENGTH)
    return [_Ragged.prefix(prefix), _Ragged(flat, starts.astype(np.int64), lengths.astype(int))]


def _join_rows(parts: list[_Ragged], n: int) -> list[bytes]:
    """Concatenate the parts row by row. Rows are grouped by their parts' lengths, so each
    group is a plain 2-D array whose rows become ``bytes`` at C speed."""
    lengths = np.stack([p.lengths for p in parts], axis=1)
    order = np.lexsort(lengths.T[::-1])  # ~10x faster than np.unique(axis=0)
    bounds = np.flatnonzero(np.any(np.diff(lengths[order], axis=0), axis=1)) + 1
    out = np.empty(n, object)
    for rows in np.split(order, bounds):
        if not len(rows):
            continue
        shape = lengths[rows[0]]
        blocks = [p.take(rows, width) for p, width in zip(parts, shape, strict=True) if width]
        joined = np.ascontiguousarray(np.hstack(blocks))
        out[rows] = joined.view(f"V{joined.shape[1]}").ravel().tolist()
    return out.tolist()


def _fixed_width_bytes(values: pa.Array | pa.ChunkedArray, width: int) -> np.ndarray:
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    values = pc.cast(values, pa.binary())
    if values.null_count or pc.any(pc.not_equal(pc.binary_length(values), width)).as_py():
        raise ValueError(f"expected {width}-byte digests without nulls")
    offsets = np.frombuffer(values.buffers()[1], np.int32)[values.offset]
    flat = np.frombuffer(values.buffers()[2], np.uint8)[offsets : offsets + width * len(values)]
    return flat.reshape(len(values), width)


def _epoch_seconds(as_of: pa.ChunkedArray | pa.Array) -> np.ndarray:
    micros = pc.cast(pc.cast(as_of, pa.timestamp("us", "UTC")), pa.int64())
    micros = micros.to_numpy(zero_copy_only=False)
    if len(micros) and (micros.min() < 0 or micros.max() // 1_000_000 >= 2**32):
        raise ValueError("as_of must fall between 1970 and 2106")
    return micros // 1_000_000
