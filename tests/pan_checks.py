"""Reading stored data back to check that it holds no card number (riskcore/pan.py)."""

import re

import redis

from riskcore.pan import find_pan

_ENTRY_ID = re.compile(rb"[0-9]+-[0-9]+")

# The same card number as entries see it: whole, grouped, after other digits, in fullwidth.
SEEDED = [
    "4111111111111111",
    "4111 1111 1111 1111",
    "4111.1111.1111.1111",
    "ref 1234 4111111111111111",
    "x-5500-0000-0000-0004",
]


def _texts(value) -> list[str]:
    if isinstance(value, bytes):
        return [value.decode("utf-8", errors="replace")]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (*_texts(k), *_texts(v))]
    if isinstance(value, list | tuple | set):
        return [t for v in value for t in _texts(v)]
    return [str(value)]


def redis_card_numbers(client: redis.Redis) -> list[str]:
    """Every key and value in Redis (all types read back) that holds a card number."""
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
            # A dead letter's ``entry`` is Redis's own entry id (a millisecond time: 13 digits,
            # Luhn-valid one time in ten), not data.
            value = [
                {k: v for k, v in fields.items() if not (k == b"entry" and _ENTRY_ID.fullmatch(v))}
                for _, fields in client.xrange(key)
            ]
        else:
            value = None
        texts = [*_texts(key), *_texts(value)]
        found += [t for t in texts if find_pan(t)]
    return found
