"""Reading stored data back to check that it holds no card number (riskcore/pan.py)."""

import redis

from riskcore.pan import pans

# The same card number as entries see it: whole, grouped, after other digits, in fullwidth.
SEEDED = [
    "4111111111111111",
    "4111 1111 1111 1111",
    "4111.1111.1111.1111",
    "ref 1234 4111111111111111",
    "x-5500-0000-0000-0004",
    "4111111111111111".translate({ord(c): 0xFF10 + int(c) for c in "0123456789"}),
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
    numbers, however written. (Not every Luhn-valid run: a stored time such as
    ``1796023096.648140`` is one by the definition, one time in ten.)"""
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
