"""Purchase events from a Redis Stream into the real-time state, so producers need not call
HTTP: ``XADD risk:events * transaction_id t1 customer_id c1 event_ts 2026-05-01T12:00:00Z
amount 12.50 merchant_id m1 device_id d1`` (the ``EventRequest`` fields; others are ignored).

Consumers share a consumer group: each entry goes to one of them, and is acknowledged (XACK)
only once it is recorded, so a consumer that crashes loses nothing: its pending entries are
claimed by a live consumer (XAUTOCLAIM) once idle for ``claim_idle_ms``. Recording is
idempotent (by transaction_id), so an entry delivered twice counts once. An entry that does not
validate goes to the dead-letter stream (``<stream>:dead``) with the reason, then is
acknowledged: a malformed event neither blocks the stream nor disappears. An entry that holds a
card number (riskcore/pan.py) is never recorded: its dead letter keeps the fields with every
card number masked, and the entry itself is deleted from the stream (XDEL), so no card number
stays in Redis.

``python -m serving.event_stream`` runs one consumer (``REDIS_URL``, ``RISK_EVENTS_STREAM``,
``RISK_EVENTS_GROUP``); run as many as the load needs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import redis
from pydantic import ValidationError

from riskcore import settings
from riskcore.online_store import OnlineStoreError, RedisClient, connect
from riskcore.pan import find_pan, mask_pans, scanned
from riskcore.realtime import RealtimeStore, Recorded
from riskcore.settings import Settings
from serving.schemas import EventRequest

log = logging.getLogger("serving.event_stream")
STREAM, GROUP = (Settings.model_fields[f].default for f in ("events_stream", "events_group"))
FIELDS = tuple(EventRequest.model_fields)  # what is kept of an entry (a dead letter too)


def publish(client: RedisClient, events: list[dict], stream: str = STREAM) -> list[bytes]:
    """What a producer does: one XADD an event (pipelined), the stream capped near 10M
    entries (consumed entries are only history)."""
    pipe = client.pipeline(transaction=False)
    for event in events:
        fields = {k: str(v) for k, v in event.items() if k in FIELDS and v is not None}
        pipe.xadd(stream, fields, maxlen=10_000_000, approximate=True)
    return pipe.execute()


class EventConsumer:
    def __init__(
        self,
        client: RedisClient,
        *,
        stream: str = STREAM,
        group: str = GROUP,
        name: str | None = None,
        batch: int = 1000,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        max_future_s: float = 300.0,
    ):
        self.client, self.stream, self.group = client, stream, group
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.batch, self.block_ms, self.claim_idle_ms = batch, block_ms, claim_idle_ms
        self.context = {"max_future_s": max_future_s}
        self.realtime = RealtimeStore(client)
        self.dead_letter = f"{stream}:dead"
        self.totals = Recorded()
        self.dead = 0

    def ensure_group(self) -> None:
        """The group, reading from the stream's beginning (entries written before it count)."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def poll(self) -> int:
        """Claim what crashed consumers left, else read new entries (blocking up to
        ``block_ms``); record them; acknowledge. Returns the entries handled."""
        _, claimed, _ = self.client.xautoclaim(
            self.stream, self.group, self.name, self.claim_idle_ms, "0-0", count=self.batch
        )
        entries = claimed
        if not entries:
            replies = self.client.xreadgroup(
                self.group, self.name, {self.stream: ">"}, count=self.batch, block=self.block_ms
            )
            entries = replies[0][1] if replies else []
        if entries:
            self.handle(entries)
        return len(entries)

    def handle(self, entries: list[tuple[bytes, dict]]) -> None:
        events, bad, carded = [], [], []
        for entry_id, fields in entries:
            doc = {
                k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()
            }
            if any(find_pan(k) or (scanned(k, v) and find_pan(v)) for k, v in doc.items()):
                carded.append(entry_id)  # refused whole, whatever else it holds
                kept = {k: mask_pans(v) for k, v in doc.items() if k in FIELDS}
                reason = "holds a card number (masked); card numbers are refused"
                bad.append((entry_id, kept | {"reason": reason, "entry": entry_id.decode()}))
                continue
            try:
                events.append(EventRequest.model_validate(doc, context=self.context))
            except ValidationError as exc:
                reason = "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                    for e in exc.errors(include_input=False)
                )
                kept = {k: v for k, v in doc.items() if k in FIELDS}
                reason = mask_pans(reason)
                bad.append((entry_id, kept | {"reason": reason, "entry": entry_id.decode()}))
        if events:
            self.totals.add(self.realtime.record(events))  # raises: nothing is acked
        pipe = self.client.pipeline(transaction=False)
        for _, letter in bad:
            pipe.xadd(self.dead_letter, letter, maxlen=1_000_000, approximate=True)
        pipe.xack(self.stream, self.group, *[entry_id for entry_id, _ in entries])
        if carded:
            pipe.xdel(self.stream, *carded)
        pipe.execute()
        if carded:
            self._rewrite_append_only_file()
        self.dead += len(bad)
        for _, letter in bad:
            log.warning("event %s dead-lettered: %s", letter["entry"], letter["reason"])

    def _rewrite_append_only_file(self) -> None:
        """The producer's XADD of a card number is in Redis's append-only file even after the
        entry is deleted; a rewrite (in the background, from the data as it is now) drops it.
        A server without AOF, or one that refuses the command (managed Redis), is left as is."""
        try:
            self.client.bgrewriteaof()
        except redis.RedisError as exc:
            log.warning("append-only file not rewritten after deleting card numbers: %s", exc)

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        self.ensure_group()
        log.info("consumer %s reading %s (group %s)", self.name, self.stream, self.group)
        while not stop.is_set():
            try:
                self.poll()
            except (redis.RedisError, OnlineStoreError) as exc:  # pending: retried later
                log.error("real-time state or stream unavailable (%s); retrying in 1 s", exc)
                time.sleep(1.0)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    env = settings.load()
    client = connect(env.redis_url, cluster=env.redis_cluster)
    EventConsumer(client, stream=env.events_stream, group=env.events_group).run()


if __name__ == "__main__":
    main()
