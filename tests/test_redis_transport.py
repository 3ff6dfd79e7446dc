"""The Redis transport (riskcore/redis_transport.py) on real redis-servers: a score's snapshot
lookup and real-time read are one packet on one connection; a cluster gets one packet per node,
all sent before any reply is read; a server that forgot the scripts is given them again; an
error reply fails the call and leaves the connection in step."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis
from redis._parsers.hiredis import _HiredisParser

from resources.local_redis import LocalRedis
from riskcore.realtime import RealtimeStore
from riskcore.redis_transport import OnlineStoreUnavailable, RedisTransport
from serving.schemas import EventRequest


@pytest.fixture
def wire(monkeypatch):
    """Every packet sent and every read from a socket, in order, as (what, the connection's
    reply parser (one per connection), bytes sent)."""
    events: list[tuple[str, object, bytes | None]] = []
    send, read = redis.Connection.send_packed_command, _HiredisParser.read_from_socket

    def sending(conn, command, check_health=True):
        events.append(("send", conn._parser, b"".join(command)))
        return send(conn, command, check_health)

    def reading(parser, *args, **kwargs):
        events.append(("read", parser, None))
        return read(parser, *args, **kwargs)

    monkeypatch.setattr(redis.Connection, "send_packed_command", sending)
    monkeypatch.setattr(_HiredisParser, "read_from_socket", reading)
    return events


@pytest.mark.integration
def test_a_score_reads_every_entity_and_the_realtime_state_in_one_round_trip(env, wire):
    from serving.schemas import ScoreRequest
    from serving.scorer import Scorer

    scorer = Scorer.open(env.config(inference_log_uri=""))
    assert scorer.models.reads_realtime
    known = next(
        r
        for r in env.served_rows().to_pylist()
        if r["customer_known"] and r["device_known"] and r["merchant_known"] and r["card_known"]
    )
    request = ScoreRequest.model_validate(env.transaction(known["transaction_id"]))
    scorer.score(request)  # the pointers are read and this thread's connection made
    for store in scorer._stores.values():  # the customers', devices', merchants', cards'
        store.pointer_cache_s = 3600.0  # no pointer refresh in the measured call
    stats = env.redis.client()
    before = stats.info("commandstats")
    wire.clear()
    scored = scorer.score(request)
    events = list(wire)
    after = stats.info("commandstats")

    assert scored.feature_source == "online"
    sends = [e for e in events if e[0] == "send"]
    assert len(sends) == 1, sends  # one packet ...
    assert {id(conn) for _, conn, _ in events} == {id(sends[0][1])}  # ... on one connection
    packet = sends[0][2]
    assert b"HGET" in packet and b"ZREVRANGEBYSCORE" in packet
    # Every reply read after the send: four records, the customer's and the device's real time
    assert events[0][0] == "send" and {e[0] for e in events[1:]} == {"read"}
    assert scored.entity_sources == dict.fromkeys(("device", "merchant", "card"), "online")
    calls = lambda stats, cmd: stats.get(f"cmdstat_{cmd}", {}).get("calls", 0)  # noqa: E731
    for command, n in (("hget", 4), ("zrevrangebyscore", 2)):
        assert calls(after, command) - calls(before, command) == n, command
    scorer.transport.close()


def test_a_cluster_gets_one_packet_per_node_all_sent_before_any_read(tmp_path, wire):
    from redis.cluster import RedisCluster

    from tests.redis_servers import start_cluster

    nodes = start_cluster(tmp_path)
    try:
        cluster = RedisCluster(host="127.0.0.1", port=nodes[0].port)
        keys = [f"k{i}" for i in range(30)]
        for key in keys:
            cluster.set(key, key.upper())
        transport = RedisTransport(cluster)
        commands = [(k, ("GET", k)) for k in keys]
        transport.execute(commands)  # connects to every node (a handshake each)
        wire.clear()
        replies = transport.execute(commands)
        assert replies == [k.upper().encode() for k in keys]
        kinds = [kind for kind, _, _ in wire]
        assert kinds[: len(nodes)] == ["send"] * len(nodes)  # every node's packet first
        assert set(kinds[len(nodes) :]) == {"read"}
        assert len({id(conn) for _, conn, _ in wire}) == len(nodes)
        plain = RedisTransport(nodes[0].client())  # not a cluster client: MOVED is an error
        with pytest.raises(OnlineStoreUnavailable, match="MovedError"):
            plain.execute(commands)
    finally:
        for node in nodes:
            node.kill()


def test_forgotten_scripts_are_loaded_again_and_error_replies_fail_cleanly(tmp_path):
    with LocalRedis(tmp_path / "redis") as server:
        client = server.client()
        store = RealtimeStore(client)
        at = datetime(2026, 5, 1, 12, tzinfo=UTC)

        def purchase(tid: str) -> EventRequest:
            return EventRequest(
                transaction_id=tid, customer_id="c", event_ts=at, amount=Decimal("1.00")
            )

        assert store.record([purchase("a")]).recorded == 1
        client.script_flush()  # as after a restart
        assert store.record([purchase("b")]).recorded == 1
        transport = store.transport
        client.set("plain", "x")
        with pytest.raises(OnlineStoreUnavailable, match="WRONGTYPE"):
            transport.execute([("plain", ("HGET", "plain", "f")), ("plain", ("GET", "plain"))])
        assert transport.execute([("plain", ("GET", "plain"))]) == [b"x"]  # still in step


def test_a_push_notice_between_replies_is_never_taken_for_a_reply(tmp_path):
    """RESP3 servers push notices (here: a tracked key's invalidation) between replies; they
    go to redis-py's handler, and every reply still answers its own command."""
    with LocalRedis(tmp_path / "redis") as server:
        client = server.client(protocol=3)
        client.set("a", "1")
        client.set("b", "2")
        transport = RedisTransport(client)
        assert transport.execute([("a", ("CLIENT", "TRACKING", "ON"))]) == [b"OK"]
        assert transport.execute([("a", ("GET", "a"))]) == [b"1"]  # now tracked
        client.set("a", "changed")  # an invalidation is pushed to the transport's connection
        replies = transport.execute([("b", ("GET", "b")), ("a", ("GET", "a"))])
        assert replies == [b"2", b"changed"]
        assert transport.execute([("b", ("GET", "b"))]) == [b"2"]  # still in step
