"""Real-time velocity features against a brute-force oracle over raw events: serving's Redis
state (Lua, a real redis-server) replayed in arrival order, and training's DuckDB SQL; windows
to the microsecond, duplicates, out-of-order and late events, bounded memory, TTL, cluster
hash slots, a real Redis Cluster; the stream consumer's crash recovery and dead letters; and
``POST /events`` over HTTP."""

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import duckdb
import pyarrow as pa
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assets.training.realtime import realtime_sql
from resources.local_redis import LocalRedis
from riskcore.realtime import (
    LAST_TXN_HORIZON,
    LATE_TOLERANCE,
    MAX_EVENTS,
    RETENTION,
    TTL_S,
    RealtimeStore,
)
from serving.event_stream import EventConsumer, publish
from serving.schemas import EventRequest

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
US = timedelta(microseconds=1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LocalRedis(tmp_path_factory.mktemp("realtime") / "redis") as server:
        yield server


@pytest.fixture
def store(server):
    client = server.client()
    client.flushall()
    return RealtimeStore(client)


def event(tid, customer, at, amount="10.00", merchant="m1", device=None) -> EventRequest:
    return EventRequest(
        transaction_id=tid,
        customer_id=customer,
        event_ts=at,
        amount=Decimal(amount),
        merchant_id=merchant,
        device_id=device,
    )


def oracle(
    events: list[EventRequest], customer: str, t: datetime, own: str, device: str | None = None
) -> list[float]:
    """The features by their definition, from the raw events (plain loops): the customer's,
    then the device's (null without one)."""
    others = [
        e
        for e in events
        if e.customer_id == customer and e.transaction_id != own and e.event_ts < t
    ]
    hour = [e for e in others if e.event_ts >= t - timedelta(hours=1)]
    short = [e for e in hour if e.event_ts >= t - timedelta(minutes=10)]
    last = max((e.event_ts for e in others), default=None)
    since = (last and (t - last) // US / 1e6) if last else math.nan
    if since == since and since > LAST_TXN_HORIZON.total_seconds():
        since = math.nan
    shared = [
        e
        for e in events
        if device is not None
        and e.device_id == device
        and e.transaction_id != own
        and t - timedelta(hours=1) <= e.event_ts < t
    ]
    return [
        float(len(short)),
        float(len(hour)),
        float(sum(e.amount for e in hour)),
        float(len({e.device_id for e in hour if e.device_id})),
        float(len({e.merchant_id for e in hour if e.merchant_id})),
        since,
        float(len(shared)) if device else math.nan,
        float(len({e.customer_id for e in shared})) if device else math.nan,
    ]


def same(a, b) -> bool:
    return all((x != x and y != y) or x == y for x, y in zip(a, b, strict=True))


# Offsets that sit on the window edges: 10 min and 1 h before a later event, +-1 us, same us.
EDGES = [
    0,
    1,
    -1,
    600_000_000,
    600_000_001,
    599_999_999,
    3_600_000_000,
    3_600_000_001,
    3_599_999_999,
]
arrivals = st.lists(
    st.tuples(
        st.integers(0, 40),  # transaction id (repeats: duplicate events; its parity: customer)
        st.one_of(st.integers(0, 2 * 3_600_000_000), st.sampled_from(EDGES)),  # us after T0
        st.sampled_from(["0.01", "9.99", "120.50", "7.35"]),
        st.sampled_from([None, "m1", "m2", "m3"]),
        st.sampled_from([None, "d1", "d2"]),
        st.integers(0, LATE_TOLERANCE // US),  # how late it arrives, within the tolerance
    ),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(arrivals=arrivals)
def test_the_redis_state_equals_the_oracle_in_arrival_order(store, arrivals):
    """Events arrive out of order (each up to the tolerance late) and some twice; each purchase
    is scored (its features read at its time) just before its event is recorded, as /score then
    /events would. Every read equals the oracle over the events recorded so far (the first
    recording of an id wins)."""
    store.client.flushall()
    # A transaction id names one purchase: its second event is the same event again (a
    # replay), only its arrival differs.
    first: dict[int, tuple] = {}
    raw = [
        (f"t{tid}", f"c{tid % 3}", T0 + us * US, amount, merchant, device, lateness)
        for tid, *drawn, lateness in arrivals
        for us, amount, merchant, device in [first.setdefault(tid, tuple(drawn))]
    ]
    # Arrival order: by event time plus lateness, so disorder stays within the tolerance.
    raw.sort(key=lambda r: r[2] + r[6] * US)
    recorded: dict[str, EventRequest] = {}
    for tid, customer, at, amount, merchant, device, _ in raw:
        served = store.read([(customer, at, tid, device)])[0]
        expected = oracle(list(recorded.values()), customer, at, tid, device)
        assert same(list(served), expected), (tid, list(served), expected)
        done = store.record([event(tid, customer, at, amount, merchant, device)])
        if tid in recorded:
            assert (done.recorded, done.duplicates) == (0, 1)
        else:
            assert (done.recorded, done.duplicates, done.late) == (1, 0, 0)
            recorded[tid] = event(tid, customer, at, amount, merchant, device)


@settings(max_examples=100, deadline=None)
@given(arrivals=arrivals)
def test_the_training_sql_equals_the_oracle(arrivals):
    """Training's DuckDB computation over raw purchases (unique ids: raw rows are) gives every
    purchase the oracle's features over all the others."""
    events: dict[str, EventRequest] = {}
    for tid, us, amount, merchant, device, _ in arrivals:
        events.setdefault(
            f"t{tid}", event(f"t{tid}", f"c{tid % 2}", T0 + us * US, amount, merchant, device)
        )
    table = pa.table(
        {
            "transaction_id": [e.transaction_id for e in events.values()],
            "customer_id": [e.customer_id for e in events.values()],
            "event_ts": pa.array([e.event_ts for e in events.values()], pa.timestamp("us", "UTC")),
            "amount": pa.array([e.amount for e in events.values()], pa.decimal128(18, 2)),
            "merchant_id": [e.merchant_id for e in events.values()],
            "device_id": [e.device_id for e in events.values()],
        }
    )
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        con.register("raw", table)
        rows = con.sql(realtime_sql("raw", "raw")).fetchall()
    assert len(rows) == len(events)
    for tid, *values in rows:
        e = events[tid]
        expected = oracle(list(events.values()), e.customer_id, e.event_ts, tid, e.device_id)
        got = [math.nan if v is None else v for v in values]
        assert same(got, expected), (tid, got, expected)


def test_windows_are_exact_to_the_microsecond(store):
    at = T0 + timedelta(hours=2)
    store.record(
        [
            event("a", "c", at - timedelta(hours=1)),  # in: the lower bound is inclusive
            event("b", "c", at - timedelta(hours=1) - US),  # out by 1 us
            event("c", "c", at - timedelta(minutes=10)),  # in both windows
            event("d", "c", at - timedelta(minutes=10) - US),  # 1 h only
            event("e", "c", at),  # same microsecond as the purchase: not before it
        ]
    )
    counts = store.read([("c", at, "x", None)])[0]
    assert list(counts[:2]) == [1.0, 3.0]
    assert counts[5] == 600.0  # the newest before t is "c"


def test_a_late_event_only_moves_the_last_purchase_and_is_counted(store):
    store.record([event("new", "c", T0)])
    late = store.record([event("old", "c", T0 - RETENTION - US)])
    assert (late.recorded, late.late) == (0, 1)
    assert store.client.zcard(store.keys("c")[0]) == 2  # the event and the ~before sentinel
    # No window of a purchase at or after newest - tolerance can hold it; the last purchase
    # before a time earlier than every retained event is the late one.
    before = store.read([("c", T0 - timedelta(minutes=1), "q", None)])[0]
    assert list(before[:5]) == [0, 0, 0, 0, 0] and before[5] == (
        RETENTION - timedelta(minutes=1) + US
    ) / timedelta(seconds=1)


def test_memory_is_bounded_and_keys_expire(store):
    burst = [event(f"b{i}", "c", T0 + i * timedelta(seconds=3)) for i in range(MAX_EVENTS + 200)]
    store.record(burst)
    zset, details, meta = store.keys("c")
    assert store.client.zcard(zset) - 1 == MAX_EVENTS == store.client.hlen(details)  # + sentinel
    assert 0 < store.client.ttl(zset) <= TTL_S and 0 < store.client.ttl(meta) <= TTL_S
    # Old state expires after a week: the purchase then has no predecessor.
    assert math.isnan(store.read([("c", T0 + timedelta(days=8), "q", None)])[0][5])


def test_one_customer_is_one_hash_slot_and_a_cluster_serves_it(tmp_path):
    from redis.cluster import RedisCluster, key_slot

    from tests.redis_servers import start_cluster

    for keys in (RealtimeStore(None).keys("c-42"), RealtimeStore(None).keys("d-7", device=True)):
        assert len({key_slot(k.encode()) for k in keys}) == 1
    nodes = start_cluster(tmp_path)
    try:
        cluster = RedisCluster(host="127.0.0.1", port=nodes[0].port)
        store = RealtimeStore(cluster)
        events = [
            event(f"t{i}", f"c{i % 7}", T0 + i * timedelta(minutes=1), device=f"d{i % 3}")
            for i in range(40)
        ]
        assert store.record(events).recorded == 40
        at = T0 + timedelta(hours=1)
        reads = store.read([(f"c{i}", at, "q", f"d{i % 3}") for i in range(7)])
        for i, features in enumerate(reads):
            assert same(list(features), oracle(events, f"c{i}", at, "q", f"d{i % 3}"))
    finally:
        for node in nodes:
            node.kill()


def test_a_crashed_consumer_loses_no_event_and_a_bad_one_is_dead_lettered(store):
    client = store.client
    good = [
        {
            "transaction_id": f"s{i}",
            "customer_id": "c",
            "amount": "5.00",
            "event_ts": (T0 + i * timedelta(minutes=1)).isoformat(),
            "merchant_id": "m",
            "card_hash": "4111" + "1111" * 3,  # a card number (in pieces here)
        }  # an extra field: never stored
        for i in range(30)
    ]
    bad = {"transaction_id": "bad", "customer_id": "c", "amount": "-3", "event_ts": "yesterday"}
    publish(client, [*good[:20], bad, *good[20:]])
    crashed = EventConsumer(client, name="a", batch=25, block_ms=10, claim_idle_ms=0)
    crashed.ensure_group()
    client.xreadgroup("realtime", "a", {"risk:events": ">"}, count=25)  # read, then it died
    survivor = EventConsumer(client, name="b", batch=100, block_ms=10, claim_idle_ms=0)
    while survivor.poll():
        pass
    assert survivor.totals.recorded == 30 and survivor.dead == 1
    assert client.xpending("risk:events", "realtime")["pending"] == 0
    letter = client.xrange("risk:events:dead")[0][1]
    assert b"amount" in letter[b"reason"] and b"card_hash" not in letter
    assert store.read([("c", T0 + timedelta(minutes=30), "q", None)])[0][1] == 30.0
    assert not any(
        b"4111" in v
        for k in client.keys("rt:*")
        if client.type(k) == b"hash"
        for v in client.hvals(k)
    )


def test_an_unavailable_state_raises_so_nothing_is_acknowledged(tmp_path):
    with LocalRedis(tmp_path / "redis") as server:
        client = server.client()
        publish(
            client,
            [
                {
                    "transaction_id": "x",
                    "customer_id": "c",
                    "amount": "1.00",
                    "event_ts": T0.isoformat(),
                }
            ],
        )
        consumer = EventConsumer(client, name="a", block_ms=10, claim_idle_ms=0)
        consumer.ensure_group()
        server.kill()
        with pytest.raises(redis.RedisError):
            consumer.poll()
        server.start()
        consumer.poll()  # the entry is still there, claimed again
        assert consumer.totals.recorded == 1


@pytest.mark.integration
def test_events_over_http(env):
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from tests.serving_env import API_KEY

    auth = {"X-API-Key": API_KEY}
    at = (T0 - timedelta(days=1)).isoformat()
    one = {
        "transaction_id": "h1",
        "customer_id": "http-c",
        "event_ts": at,
        "amount": "3.50",
        "merchant_id": "m",
        "channel": "online",
    }
    with TestClient(create_app(env.config(inference_log_uri=""))) as client:
        assert client.post("/events", json=one).status_code == 401
        first = client.post("/events", json=one, headers=auth).json()
        again = client.post(
            "/events", json={"events": [one, one | {"transaction_id": "h2"}]}, headers=auth
        ).json()
        assert first == {"recorded": 1, "duplicates": 0, "late": 0}
        assert again == {"recorded": 1, "duplicates": 1, "late": 0}
        refused = client.post("/events", json=one | {"amount": "-1"}, headers=auth)
        assert refused.status_code == 422 and "amount" in refused.text and "-1" not in refused.text
        future = one | {"event_ts": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
        late = client.post("/events", json=future, headers=auth)
        # Only the form the body takes is named (not the list form's missing "events" too)
        assert late.status_code == 422
        assert [e["loc"] for e in late.json()["detail"]] == [["body", "one", "event_ts"]]
        listed = client.post("/events", json={"events": [future]}, headers=auth)
        assert [e["loc"] for e in listed.json()["detail"]] == [
            ["body", "batch", "events", 0, "event_ts"]
        ]
        assert client.post("/events", content=b"{not json", headers=auth).status_code == 422
        metrics = client.get("/metrics", headers=auth).text
        assert 'risk_events_total{outcome="duplicate"}' in metrics
        assert "/events" in client.get("/openapi.json").json()["paths"]


def test_an_event_with_a_card_number_is_dead_lettered_masked_and_never_kept(store):
    from demo.pan_scan import SEEDED, redis_card_numbers

    client = store.client
    ok = {"customer_id": "c", "amount": "5.00", "event_ts": T0.isoformat()}
    carded = [
        ok | {"transaction_id": f"p{i}", field: pan}
        for i, (field, pan) in enumerate(
            (f, p) for f in ("transaction_id", "merchant_id", "device_id") for p in SEEDED
        )
    ]
    carded.append(ok | {"transaction_id": "p-bad", "amount": "-1", "device_id": SEEDED[0]})
    publish(client, [*carded, ok | {"transaction_id": "fine", "device_id": "1" * 20}])
    client.xadd("risk:events", {"transaction_id": "extra", "pan": SEEDED[1]} | ok)
    consumer = EventConsumer(client, name="a", block_ms=10, claim_idle_ms=0)
    consumer.ensure_group()
    while consumer.poll():
        pass
    assert consumer.totals.recorded == 1  # the 20-digit device id is no card number
    assert consumer.dead == len(carded) + 1
    letters = [fields for _, fields in client.xrange("risk:events:dead")]
    assert all(b"card number" in letter[b"reason"] for letter in letters)
    assert client.xlen("risk:events") == 1  # the card-bearing entries are deleted
    assert redis_card_numbers(client) == []
