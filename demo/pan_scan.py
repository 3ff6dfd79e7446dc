"""Reading stored data back to check that it holds none of the card numbers a test seeded
(riskcore/pan.py finds them): used by `make chaos` and the tests."""

import contextlib
import sqlite3
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import redis

from riskcore.pan import pans

# The same card number as entries see it: whole, grouped, after other digits, in fullwidth.
# (Written in pieces: the source itself holds no unbroken card number.)
CARD = "4111" + "1111" * 3  # the public Visa test number
SEEDED = [
    CARD,
    " ".join(["4111"] + ["1111"] * 3),
    ".".join(["4111"] + ["1111"] * 3),
    f"ref 1234 {CARD}",
    "x-" + "-".join(["5500", "0000", "0000", "0004"]),
    CARD.translate({ord(c): 0xFF10 + int(c) for c in "0123456789"}),
]


def _texts(value) -> list[str]:
    if isinstance(value, bytes):
        return [value.decode("utf-8", errors="replace")]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (*_texts(k), *_texts(v))]
    if isinstance(value, list | tuple | set):
        return [t for v in value for t in _texts(v)]
    return [str(value)]


SEEDED_DIGITS = {d for text in SEEDED for d in pans(text)}


def redis_card_numbers(client: redis.Redis) -> list[str]:
    """Every key and value in Redis (all types read back) that holds one of the seeded card
    numbers, however written. (Not every Luhn-valid run: a stored Unix time with its
    microseconds, ten digits, a dot and six, is one by the definition, one time in ten.)"""
    found = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            value = client.get(key)
        elif kind == b"hash":
            value = client.hgetall(key)
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        elif kind == b"set":
            value = client.smembers(key)
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"stream":
            value = [fields for _, fields in client.xrange(key)]
        else:
            value = None
        texts = [*_texts(key), *_texts(value)]
        found += [t for t in texts if SEEDED_DIGITS.intersection(pans(t))]
    return found


def _hits(texts: list[str]) -> list[str]:
    return [t[:80] for t in texts if SEEDED_DIGITS.intersection(pans(t))]


def stored_card_numbers(root: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Every file under ``root`` decoded as what it is, and the seeded card numbers found: a
    Parquet file (Delta data and checkpoints) read as a table, a SQLite database (MLflow's,
    Dagster's run and event storage) and a DuckDB database table by table, anything else
    (Delta's JSON log, Redis's append-only files, artifacts, logs) as text. A byte search
    would miss digits that compression or encoding hides. Folders named in ``skip`` are not
    read. Redis's RDB files are read through the server (``redis_card_numbers``)."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if any(part in skip for part in path.relative_to(root).parts):
            continue
        head = path.read_bytes()[:16]
        if path.suffix == ".rdb":
            continue
        if head[:4] == b"PAR1":
            texts = _texts(pq.read_table(path).to_pylist())
        elif head == b"SQLite format 3\x00":
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                tables = [
                    r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                ]
                texts = _texts([db.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables])
        elif path.suffix == ".duckdb":
            with contextlib.closing(duckdb.connect(str(path), read_only=True)) as db:
                tables = db.execute(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_type = 'BASE TABLE'"
                ).fetchall()
                texts = _texts(
                    [db.execute(f'SELECT * FROM "{s}"."{t}"').fetchall() for s, t in tables]
                )
        elif path.suffix == ".wal":
            continue  # DuckDB's write-ahead log: replayed into the database file read above
        else:
            texts = _texts(path.read_bytes())
        found += [f"{path.relative_to(root)}: {hit}" for hit in _hits(texts)]
    return found
