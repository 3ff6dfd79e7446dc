"""Real-time velocity features: per-customer state in Redis, updated from purchase events
(``POST /events``, the Redis Stream consumer, or ``RealtimeStore.record``) and read at scoring.

**Semantics** (training computes the same from raw purchases, ``assets/training/realtime.py``;
a parity test replays a day through ``/events`` and compares): for a purchase of customer ``c``
at time ``t``, the windows hold ``c``'s *other* recorded purchases with ``t - w <= event_ts < t``
(``w`` = 10 min or 1 h; the bound is inclusive below, exclusive above, to the microsecond). The
scored purchase never counts in its own features, nor does any purchase at the same microsecond.

- ``txn_count_10m``, ``txn_count_1h``: purchases in the window;
- ``amount_sum_1h``: their amounts (settlement currency, exact in cents);
- ``distinct_devices_1h``: distinct devices among them (purchases without a device not counted);
- ``distinct_merchants_1h``: distinct merchants among them (likewise without a merchant);
- ``seconds_since_last_txn``: ``t`` minus the newest purchase before ``t``; null when there is
  none in the 7 days before ``t``.

**Per device** (``DEVICE_REALTIME_FEATURES``), the same for a purchase's *device* ``d``: the
other recorded purchases made from ``d`` with ``t - 1 h <= event_ts < t``, whoever made them:

- ``device_txn_count_1h``: how many;
- ``device_distinct_customers_1h``: how many distinct customers made them (a ring's fresh
  accounts run from one device);
- both null for a purchase without a device.

The device's state is kept exactly as a customer's (the same script, keys ``rt:dv:{<digest>}:...``,
the customer's short hash where a customer's state holds the device's), so the rules below hold
for it with "device" for "customer".

**Duplicates**: a ``transaction_id`` is recorded once; a second event with it changes nothing.
**Out of order**: events may arrive in any order. The state keeps the events of the last
``RETENTION`` (1 h + ``LATE_TOLERANCE`` of 5 min) before the customer's newest event. Features at
any ``t`` no more than ``LATE_TOLERANCE`` before that newest event are exact; an event older
than the retained span can no longer enter any such window: it only moves the "newest purchase
before" used by ``seconds_since_last_txn`` and is counted as late.
**Bounded memory**: at most ``MAX_EVENTS`` events a customer are retained (beyond, the oldest go
and the counts of a customer with more than that many purchases in an hour saturate), and every
key expires ``TTL_S`` (7 days) after the customer's last event.

**Keys**, one hash slot per customer (``{...}``: cluster-safe, one script touches one slot):
``rt:{<digest>}:e`` a sorted set of ``cents|device|merchant|transaction id`` by event time (us;
device and merchant as short hashes: no raw identifiers in Redis) whose oldest member,
``~before``, holds the newest trimmed event time (a read is one range query);
``rt:{<digest>}:d`` a hash transaction id -> event time (duplicates); ``rt:{<digest>}:m`` the
newest event time and the newest trimmed one (for the recording script).
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

import numpy as np

from riskcore.redis_transport import Read, RedisClient, RedisTransport, Script
from riskcore.timestamps import micros

REALTIME_FEATURES = (
    "txn_count_10m",
    "txn_count_1h",
    "amount_sum_1h",
    "distinct_devices_1h",
    "distinct_merchants_1h",
    "seconds_since_last_txn",
)
DESCRIPTIONS = {
    "txn_count_10m": "Purchases in the 10 minutes before this one (real time).",
    "txn_count_1h": "Purchases in the hour before this one (real time).",
    "amount_sum_1h": "Amount spent in the hour before this one (real time).",
    "distinct_devices_1h": "Distinct devices used in the hour before this one (real time).",
    "distinct_merchants_1h": "Distinct merchants in the hour before this one (real time).",
    "seconds_since_last_txn": "Seconds since the previous purchase (null: none in 7 days).",
    "device_txn_count_1h": "Purchases from this device in the hour before, by anyone (real time).",
    "device_distinct_customers_1h": "Distinct customers who used this device in the hour "
    "before (real time).",
}
DEVICE_REALTIME_FEATURES = ("device_txn_count_1h", "device_distinct_customers_1h")
# Where they come from in a device state's ``features`` (its "devices" are the customers)
_DEVICE_POSITIONS = [
    REALTIME_FEATURES.index("txn_count_1h"),
    REALTIME_FEATURES.index("distinct_devices_1h"),
]
# A purchase's real-time vector, as ``RealtimeStore.read_commands`` decodes it: the customer's,
# then its device's (a spec picks its own by name: riskcore/model_spec.py)
ALL_REALTIME_FEATURES = REALTIME_FEATURES + DEVICE_REALTIME_FEATURES
_NO_DEVICE = [math.nan] * len(DEVICE_REALTIME_FEATURES)
SHORT_WINDOW = timedelta(minutes=10)
LONG_WINDOW = timedelta(hours=1)
LAST_TXN_HORIZON = timedelta(days=7)
LATE_TOLERANCE = timedelta(minutes=5)
RETENTION = LONG_WINDOW + LATE_TOLERANCE
MAX_EVENTS = 1000
SENTINEL = b"~before"
TTL_S = int(LAST_TXN_HORIZON.total_seconds())
_US = timedelta(microseconds=1)

# Records events of one customer (the sorted set's oldest member, "~before", stands for the
# newest event trimmed from it). KEYS: e, d, m. ARGV: retention (us), max events, ttl (s), then
# (id, event time us, "cents|device|merchant") per event. The sorted set's members are
# "cents|device|merchant|id" (the id last: it may hold any character), so a read needs no
# further lookup; the hash maps ids to event times (duplicates). Returns {recorded,
# duplicates, late}.
_RECORD = Script("""
local e, d, m = KEYS[1], KEYS[2], KEYS[3]
local retention, cap, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local newest = tonumber(redis.call('HGET', m, 'newest') or '-1')
local before = tonumber(redis.call('HGET', m, 'before') or '-1')
local recorded, duplicates, late = 0, 0, 0
for i = 4, #ARGV, 3 do
  local id, ts = ARGV[i], tonumber(ARGV[i + 1])
  if redis.call('HEXISTS', d, id) == 1 then
    duplicates = duplicates + 1
  elseif newest >= 0 and ts < newest - retention then
    late = late + 1
    if ts > before then before = ts end
  else
    redis.call('ZADD', e, ARGV[i + 1], ARGV[i + 2] .. '|' .. id)
    redis.call('HSET', d, id, ARGV[i + 1])
    recorded = recorded + 1
    if ts > newest then newest = ts end
  end
end
local function drop(entries)
  for j = 1, #entries, 2 do
    redis.call('HDEL', d, string.match(entries[j], '^[^|]*|[^|]*|[^|]*|(.*)$'))
    local ts = tonumber(entries[j + 1])
    if ts > before then before = ts end
  end
end
redis.call('ZREM', e, '~before')  -- the sentinel goes back below, after the trims
local cutoff = string.format('%.0f', newest - retention)
drop(redis.call('ZRANGEBYSCORE', e, '-inf', '(' .. cutoff, 'WITHSCORES'))
redis.call('ZREMRANGEBYSCORE', e, '-inf', '(' .. cutoff)
local extra = redis.call('ZCARD', e) - cap
if extra > 0 then
  drop(redis.call('ZRANGE', e, 0, extra - 1, 'WITHSCORES'))
  redis.call('ZREMRANGEBYRANK', e, 0, extra - 1)
end
redis.call('HSET', m, 'newest', string.format('%.0f', newest), 'before',
           string.format('%.0f', before))
-- The newest trimmed time as the set's oldest member: one range read finds it.
if before >= 0 then redis.call('ZADD', e, string.format('%.0f', before), '~before') end
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ttl) end
return {recorded, duplicates, late}
""")


Query = tuple[str, datetime, str, str | None]  # customer, event time, transaction id, device


class Event(Protocol):
    """A purchase as the real-time state needs it (``serving.schemas.EventRequest``)."""

    transaction_id: str
    customer_id: str
    event_ts: datetime  # timezone-aware
    amount: Decimal
    merchant_id: str | None
    device_id: str | None


@dataclass
class Recorded:
    recorded: int = 0
    duplicates: int = 0
    late: int = 0

    def add(self, counts) -> None:
        """Add a script's reply (recorded, duplicates, late), or another ``Recorded``."""
        recorded, duplicates, late = counts
        self.recorded += int(recorded)
        self.duplicates += int(duplicates)
        self.late += int(late)

    def __iter__(self):
        return iter((self.recorded, self.duplicates, self.late))


def _short_hash(value: str) -> str:
    return hashlib.blake2b(value.encode(), digest_size=6).hexdigest()


def cents(amount: Decimal) -> int:
    """Exact cents of a settlement amount (2 decimals)."""
    return int((amount * 100).to_integral_value())


def _pairs(reply: list) -> list:
    """(member, score) pairs of a WITHSCORES reply: flat under RESP2, paired under RESP3."""
    if reply and isinstance(reply[0], list):
        return reply
    return list(zip(reply[::2], reply[1::2], strict=True))


def features(reply: list, t_us: int, own: bytes) -> list[float]:
    """The features (``REALTIME_FEATURES`` order, NaN for null) of one purchase from a read's
    reply: the customer's members before ``t``, newest first (the window, what little the
    state keeps before it, and the ``~before`` sentinel, oldest)."""
    long, short = t_us - LONG_WINDOW // _US, t_us - SHORT_WINDOW // _US
    n_short = n_long = total_cents = 0
    last = -1
    devices, merchants = set(), set()
    for member, score in _pairs(reply):
        at = int(float(score))
        if member == SENTINEL:
            last = at if last < 0 else last
            break
        amount, device, merchant, transaction_id = member.split(b"|", 3)
        if transaction_id == own:
            continue
        last = at if last < 0 else last
        if at < long:
            break
        n_long += 1
        n_short += at >= short
        total_cents += int(amount)
        if device:
            devices.add(device)
        if merchant:
            merchants.add(merchant)
    since = (t_us - last) / 1e6 if last >= 0 else math.nan
    if since > LAST_TXN_HORIZON.total_seconds():
        since = math.nan
    return [n_short, n_long, total_cents / 100, len(devices), len(merchants), since]


class RealtimeStore:
    """Records purchase events (one script call per customer) and reads the real-time
    features (one range query per customer), pipelined: one round trip per server a batch.
    Failures raise ``OnlineStoreUnavailable`` (``riskcore/redis_transport.py``)."""

    def __init__(
        self, client: RedisClient, prefix: str = "rt", *, transport: RedisTransport | None = None
    ):
        self.client = client
        self.prefix = prefix
        # The scorer passes the online store's: the two reads of a score share one packet.
        self.transport = transport or RedisTransport(client)

    def keys(self, customer_id: str, *, device: bool = False) -> tuple[str, str, str]:
        """A customer's keys, or (``device``) a device's."""
        tag = f"{self.prefix}:{'dv:' if device else ''}{{{_short_hash(customer_id)}}}"
        return f"{tag}:e", f"{tag}:d", f"{tag}:m"

    def record(self, events: Iterable[Event]) -> Recorded:
        """Each event into its customer's state and its device's; the counts are the
        customers' (a device's state sees the same events)."""
        by_customer: dict[str, list] = defaultdict(list)
        by_device: dict[str, list] = defaultdict(list)
        for ev in events:
            cents_, at = str(cents(ev.amount)), micros(ev.event_ts)
            merchant = _short_hash(ev.merchant_id) if ev.merchant_id else ""
            device = _short_hash(ev.device_id) if ev.device_id else ""
            by_customer[ev.customer_id] += [ev.transaction_id, at, f"{cents_}|{device}|{merchant}"]
            if ev.device_id:
                customer = _short_hash(ev.customer_id)
                by_device[ev.device_id] += [
                    ev.transaction_id,
                    at,
                    f"{cents_}|{customer}|{merchant}",
                ]
        retention = RETENTION // _US
        commands = []
        for states, device in ((by_customer, False), (by_device, True)):
            for entity, args in states.items():
                keys = self.keys(entity, device=device)
                call = _RECORD.call(keys, retention, MAX_EVENTS, TTL_S, *args)
                commands.append((keys[0], call))
        done = Recorded()
        for reply in self.transport.execute(commands)[: len(by_customer)]:
            done.add(reply)
        return done

    def read(self, queries: list[Query]) -> list[np.ndarray]:
        """The features (``ALL_REALTIME_FEATURES``) of purchases (customer id, event time,
        transaction id, device id or None)."""
        return self.transport.run(self.read_commands(queries))

    def read_commands(self, queries: list[Query]) -> Read[list[np.ndarray]]:
        """The commands of ``read`` and their decoder, to send alone or with other reads (the
        scorer sends them with the snapshot lookups). One plain command a customer and one a
        device (its members before ``t``, newest first: no script, a few us of Redis); the
        features are computed here."""
        commands = []
        for customer, at, _, device in queries:
            t = f"({micros(at)}"
            events = self.keys(customer)[0]
            commands.append((events, ("ZREVRANGEBYSCORE", events, t, "-inf", "WITHSCORES")))
            if device:
                events = self.keys(device, device=True)[0]
                commands.append((events, ("ZREVRANGEBYSCORE", events, t, "-inf", "WITHSCORES")))

        def decode(replies: list) -> list[np.ndarray]:
            out, k = [], 0
            for _, at, transaction_id, device in queries:
                t, own = micros(at), transaction_id.encode()
                values = features(replies[k], t, own)
                k += 1
                if device:
                    theirs = features(replies[k], t, own)
                    values += [theirs[p] for p in _DEVICE_POSITIONS]
                    k += 1
                else:
                    values += _NO_DEVICE
                out.append(np.array(values, dtype=np.float64))
            return out

        return Read(commands, decode)
