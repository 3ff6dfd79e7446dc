"""The online store: customer snapshot records in Redis, served one generation at a time.

Keys, per feature-set version (``p`` is a prefix, "rf" by default)::

    p:<version>:layout          the feature set as JSON: records decode with nothing else
    p:<version>:seq             generation counter
    p:<version>:current         the pointer: which generation serves, its as_of, when written
    p:<version>:<gen>:<bucket>  a Redis hash of ~100 customers: field = 6 bytes of the
                                customer's digest, value = the record (serving/codec.py)
    p:<version>:loading         the generations being written (field = id, value = bucket
                                bits): one left behind is a load that died half way

A materialization writes a whole new generation (every key with a TTL), checks that every
record arrived, and only then flips the pointer, with a compare-and-set script that refuses to
move it to an older as_of. Readers follow the pointer (cached for at most ``pointer_cache_s``)
and read that generation only, so they never see a mix of two; a run that fails leaves the
pointer, and with it the previous generation, as it was. The superseded generation is given a
short grace TTL (readers may still hold the old pointer for a second); everything else expires
by the TTL. A load killed half way cannot clean up after itself: the next load removes its
partial generation (registered under ``loading`` before its first record was written). Every key
of one version carries the version, so a model never reads records of another and a dropped
feature set is removed by one prefix scan.

One bucket per key and one key per bucket, so a Redis Cluster needs nothing special: keys
spread over slots by bucket, and the transport (``riskcore/redis_transport.py``) sends each
node its own commands. Lookups are ``Read``s (commands and a decoder), so the scorer can send
them in the same packet as the real-time read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import redis
from redis.cluster import ClusterNode, RedisCluster

from riskcore import settings
from riskcore.codec import OnlineRecord, RecordCodec, slot, slots
from riskcore.feature_set import FeatureSet
from riskcore.redis_transport import (  # the errors are imported from here too
    OnlineStoreError,
    OnlineStoreUnavailable,
    Read,
    RedisClient,
    RedisTransport,
    Script,
    explain,
)

# Bucket hashes stay listpack-encoded (~190 bytes a customer instead of ~325 for a key per
# customer) while they have at most this many entries of at most this many bytes. Our servers
# start with these settings; on a managed Redis set them in its parameter group.
SERVER_CONFIG = {"hash-max-ziplist-entries": "1024", "hash-max-ziplist-value": "1024"}

# The compare-and-set flip: the pointer moves to a generation of an equal or newer as_of only.
# Returns nil when it moved, else the as_of that blocked it.
_FLIP = """
local current = redis.call('HGET', KEYS[1], 'as_of')
if current and tonumber(current) > tonumber(ARGV[1]) then return current end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return false
"""


# Many customers in one reply (single Redis): parsing one array reply in C beats reading a
# hundred pipelined replies through redis-py (~5 us each). A cluster spreads buckets over
# slots, which one script cannot span: there the lookups are pipelined per node.
_GET_MANY = Script("""
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGET', key, ARGV[i]) end
return out
""")


@dataclass(frozen=True)
class Generation:
    """What the pointer says: the generation serving and how fresh it is."""

    id: int
    as_of: datetime
    written_at: datetime
    expires_at: datetime
    customers: int
    bucket_bits: int
    bytes: int
    layout_tag: str
    # When readers start using it: as_of + the availability lag training assumes, or when its
    # load ended if that was later (docs/architecture.md, "Generations").
    available_at: datetime | None = None

    @property
    def expired(self) -> bool:
        return datetime.now(UTC) >= self.expires_at

    def available(self, now: datetime) -> bool:
        return self.available_at is None or now >= self.available_at

    def to_fields(self) -> dict[str, str]:
        return {
            "generation": str(self.id),
            "as_of": str(int(self.as_of.timestamp())),
            "written_at": f"{self.written_at.timestamp():.6f}",
            "expires_at": f"{self.expires_at.timestamp():.6f}",
            "customers": str(self.customers),
            "bucket_bits": str(self.bucket_bits),
            "bytes": str(self.bytes),
            "layout_tag": self.layout_tag,
        } | ({"available_at": f"{self.available_at.timestamp():.6f}"} if self.available_at else {})

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Generation:
        f = {k.decode(): v.decode() for k, v in fields.items()}
        at = lambda name: datetime.fromtimestamp(float(f[name]), UTC)  # noqa: E731
        return cls(
            int(f["generation"]),
            at("as_of"),
            at("written_at"),
            at("expires_at"),
            int(f["customers"]),
            int(f["bucket_bits"]),
            int(f["bytes"]),
            f["layout_tag"],
            at("available_at") if "available_at" in f else None,
        )


@dataclass(frozen=True, slots=True)
class Missing:
    """No record to serve: ``unknown_customer`` (not in the serving snapshot), ``no_generation``
    (nothing materialized for this version, e.g. Redis restarted empty) or ``expired`` (the
    serving generation is past its TTL)."""

    customer_id: str
    reason: str


@dataclass
class MaterializationReport:
    generation: int | None
    as_of: datetime
    customers: int = 0
    bytes: int = 0
    buckets: int = 0
    seconds: float = 0.0
    previous: Generation | None = None
    skipped: str | None = None  # why nothing was written (an older as_of than the one serving)
    redis_memory_delta: int | None = None
    warnings: list[str] = field(default_factory=list)
    stray_generations: list[int] = field(default_factory=list)  # partial ones removed first
    available_at: datetime | None = None  # when readers start using it
    late_s: float = 0.0  # how long after the intended available_at the load ended

    @property
    def customers_per_second(self) -> float:
        return self.customers / self.seconds if self.seconds else 0.0


def connect(url: str, *, cluster: bool = False, **kwargs) -> RedisClient:
    """A client for ``redis://``, ``rediss://`` (TLS) or ``unix://`` URLs, with user and password
    when the URL has them. ``cluster``: a Redis Cluster; several seed nodes may be given as
    comma-separated URLs (the first one's credentials and options apply to all)."""
    urls = [u.strip() for u in url.split(",") if u.strip()]
    if not cluster:
        return redis.Redis.from_url(urls[0], **kwargs)
    seeds = [ClusterNode(*_host_port(u)) for u in urls[1:]]
    try:
        return RedisCluster.from_url(urls[0], startup_nodes=seeds, **kwargs)
    except redis.RedisError as exc:
        message = f"cannot reach the Redis Cluster at {safe_url(url)}: {exc}"
        raise OnlineStoreUnavailable(message) from exc


def safe_url(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = []
    for u in url.split(","):
        s = urlsplit(u.strip())
        if s.password:
            netloc = f"{s.username or ''}:***@{s.hostname}" + (f":{s.port}" if s.port else "")
            s = s._replace(netloc=netloc)
        parts.append(urlunsplit(s))
    return ",".join(parts)


def _host_port(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    s = urlsplit(url)
    return s.hostname or "127.0.0.1", s.port or 6379


def bucket_bits(customers: int, bucket_size: int) -> int:
    """Buckets are a power of two, so a bucket is the top bits of a digest: on average between
    half of and ``bucket_size`` customers in each (~80 B of key overhead per bucket)."""
    return max(0, math.ceil(math.log2(max(customers, 1) / bucket_size)))


class OnlineStore:
    """Reads and writes one feature-set version's records."""

    def __init__(
        self,
        client: RedisClient,
        version: str,
        *,
        prefix: str = "rf",
        codec: RecordCodec | None = None,
        pointer_cache_s: float = 1.0,
        ttl_s: int = 3 * 86_400,
        superseded_ttl_s: int = 300,
        bucket_size: int = 64,  # smaller buckets: faster lookups (a listpack is scanned)
        chunk_rows: int = 250_000,  # records held before writing: bounds the writer's memory
        where: str = "",
        transport: RedisTransport | None = None,
    ):
        self.client = client
        # Shared with the real-time state by the scorer: one connection a thread for both.
        self.transport = transport or RedisTransport(client, where)
        self.version = version
        self.prefix = f"{prefix}:{version}"
        self._codec = codec
        self.pointer_cache_s = pointer_cache_s
        self.ttl_s = ttl_s
        self.superseded_ttl_s = superseded_ttl_s
        self.bucket_size = bucket_size
        self.chunk_rows = chunk_rows
        self.where = where or self.transport.where
        # (fetched at, the newest generation, the one serving): see serving_generation
        self._pointer: tuple[float, Generation | None, Generation | None] = (-math.inf, None, None)

    # -- keys -------------------------------------------------------------------------------

    @property
    def pointer_key(self) -> str:
        return f"{self.prefix}:current"

    @property
    def previous_key(self) -> str:
        """The pointer of the generation the current one replaced (an operator's way back)."""
        return f"{self.prefix}:previous"

    @property
    def pin_key(self) -> str:
        """An as_of an operator rolled back: it is not loaded again (refill, a re-run)."""
        return f"{self.prefix}:pinned"

    @property
    def loading_key(self) -> str:
        """The generations being written: field = generation id, value = its bucket bits. A
        load registers its generation before writing a record and removes the entry when it
        ends (flipped, skipped or cleaned up); an entry left behind is a load that died."""
        return f"{self.prefix}:loading"

    def bucket_key(self, generation: int, bucket: int) -> str:
        return f"{self.prefix}:{generation}:{bucket}"

    def _bucket_keys(self, generation: int, bits: int) -> list[str]:
        return [self.bucket_key(generation, b) for b in range(1 << bits)]

    # -- reading ----------------------------------------------------------------------------

    @property
    def codec(self) -> RecordCodec:
        """The layout stored beside the records (self-describing), unless one was given."""
        if self._codec is None:
            key = f"{self.prefix}:layout"
            (text,) = self.transport.execute([(key, ("GET", key))])
            if text is None:
                raise OnlineStoreError(f"no layout for {self.version} at {self.where}")
            self._codec = RecordCodec(FeatureSet.from_json(text))
        return self._codec

    def current_generation(self, *, fresh: bool = False) -> Generation | None:
        """The newest generation loaded (the pointer), re-read at most every ``pointer_cache_s``."""
        return self._pointers(fresh)[0]

    def serving_generation(self, *, fresh: bool = False) -> Generation | None:
        """The generation readers use: the newest loaded once it is available (``available_at``:
        its as_of + the availability lag training assumes); until then the one it replaced,
        so that serving never reads a snapshot that training says was not there yet. None
        when none is available."""
        return self._pointers(fresh)[1]

    def _pointers(self, fresh: bool) -> tuple[Generation | None, Generation | None]:
        fetched, newest, serving = self._pointer
        if fresh or time.monotonic() - fetched > self.pointer_cache_s:
            fields = self._hash(self.pointer_key)
            newest = serving = Generation.from_fields(fields) if fields else None
            now = settings.now()
            if newest is not None and not newest.available(now):
                fields = self._hash(self.previous_key)
                previous = Generation.from_fields(fields) if fields else None
                usable = (
                    previous is not None and previous.available(now) and previous.id != newest.id
                )
                serving = previous if usable else None
            self._pointer = (time.monotonic(), newest, serving)
        return newest, serving

    def _hash(self, key: str) -> dict[bytes, bytes]:
        """A hash's fields (empty for a missing key): RESP2 answers a flat list, RESP3 a map."""
        (fields,) = self.transport.execute([(key, ("HGETALL", key))])
        if isinstance(fields, list):
            fields = dict(zip(fields[::2], fields[1::2], strict=True))
        return fields or {}

    def get(self, customer_id: str) -> OnlineRecord | Missing:
        return self.transport.run(self.lookup_commands([customer_id]))[0]

    def get_many(self, customer_ids: Iterable[str]) -> list[OnlineRecord | Missing]:
        """Many customers in one round trip, all from the same generation."""
        return self.transport.run(self.lookup_commands(list(customer_ids)))

    def lookup_commands(self, customer_ids: list[str]) -> Read[list[OnlineRecord | Missing]]:
        """The commands that read these customers' records (of the serving generation) and
        their decoder, to send alone or with other reads. Reads the pointer (another round
        trip) when the cached one is older than ``pointer_cache_s``."""
        ids = customer_ids
        generation = self.serving_generation()
        if generation is None or generation.expired:
            reason = "expired" if generation else "no_generation"
            return Read([], lambda _: [Missing(c, reason) for c in ids])
        if len(ids) == 1:  # the common case, kept short: a score is ~100 us in all
            bucket, fid = slot(ids[0], generation.bucket_bits)
            key = f"{self.prefix}:{generation.id}:{bucket}"
            return Read([(key, ("HGET", key, fid))], lambda replies: self._records(ids, replies))
        keys, fields = [], []
        for customer_id in ids:
            bucket, fid = slot(customer_id, generation.bucket_bits)
            keys.append(self.bucket_key(generation.id, bucket))
            fields.append(fid)
        if len(ids) > 1 and not isinstance(self.client, RedisCluster):
            # One script call, one array reply (see _GET_MANY).
            command = (keys[0], _GET_MANY.call(keys, *fields))
            return Read([command], lambda replies: self._records(ids, replies[0]))
        commands = [(k, ("HGET", k, f)) for k, f in zip(keys, fields, strict=True)]
        return Read(commands, lambda replies: self._records(ids, replies))

    def _records(self, ids: list[str], values: list) -> list[OnlineRecord | Missing]:
        return [
            Missing(c, "unknown_customer") if v is None else self.codec.decode(c, v)
            for c, v in zip(ids, values, strict=True)
        ]

    # -- writing ----------------------------------------------------------------------------

    def write_generation(
        self,
        batches: Iterable[pa.RecordBatch | pa.Table],
        *,
        feature_set: FeatureSet,
        as_of: datetime,
        customers: int,
        available_at: datetime | None = None,
        check_memory: bool = True,
        log: Callable[[str], None] = lambda _: None,
    ) -> MaterializationReport:
        """Write one snapshot as a new generation and flip the pointer to it.

        ``batches`` hold the snapshot's rows (the feature set's columns, ``as_of`` and a
        ``customer_digest`` column of SHA-256 digests of the customer ids), in any order.
        ``customers`` is their count (it fixes the bucket count before the first write). A
        snapshot older than the one serving is not written (the pointer never moves back).
        ``available_at``: when readers may start using it (training's as_of + lag); until
        then they keep the generation it replaces. A load that ends later makes it available
        when it ends (recorded in the report: ``available_at``, ``late_s``). None: at once.
        """
        if feature_set.version != self.version:
            raise OnlineStoreError(f"{feature_set.version} written to a {self.version} store")
        codec = self._codec = RecordCodec(feature_set)
        began = time.perf_counter()
        previous = self.current_generation(fresh=True)
        report = MaterializationReport(None, as_of, previous=previous)
        try:
            report.stray_generations = self.remove_stray_generations()
        except (OnlineStoreError, redis.RedisError) as exc:  # the load itself may still work
            report.warnings.append(f"partial generations of dead loads not removed: {exc}")
        pinned = self.pinned()
        if pinned is not None and int(pinned["as_of"]) == int(as_of.timestamp()):
            report.skipped = (
                f"as_of {as_of:%Y-%m-%d} was rolled back by an operator ({pinned['reason']}): "
                "not loaded again; a newer snapshot loads as usual"
            )
            return report
        if previous is not None and as_of < previous.as_of:
            report.skipped = (
                f"as_of {as_of:%Y-%m-%d} is older than the serving generation {previous.id} "
                f"(as_of {previous.as_of:%Y-%m-%d}): the pointer never moves back"
            )
            return report
        report.warnings.extend(self._server_warnings())
        memory_before = self._used_memory()
        if check_memory:
            self._check_memory(customers, memory_before, previous)
        bits = bucket_bits(customers, self.bucket_size)
        try:
            self.client.set(f"{self.prefix}:layout", feature_set.to_json())
            report.generation = generation = int(self.client.incr(f"{self.prefix}:seq"))
            self._register(generation, bits)  # before any record: a dead load leaves a trace
            log(f"writing generation {generation} of {self.version}: {customers} customers")
            report.bytes, report.customers = self._write_records(codec, generation, bits, batches)
            present = sum(self._pipelined("HLEN", self._bucket_keys(generation, bits)))
            if present != report.customers:
                raise OnlineStoreError(
                    f"generation {generation} is incomplete: {present} of {report.customers} "
                    "records are in Redis (evicted by a maxmemory policy, or duplicate customers)"
                )
            now = datetime.now(UTC)
            clock = settings.now()  # the pipeline's (a simulation moves it)
            if available_at is not None:
                report.late_s = max((clock - available_at).total_seconds(), 0.0)
                available_at = max(available_at, clock)
            report.available_at = available_at
            new = Generation(
                generation,
                as_of,
                now,
                datetime.fromtimestamp(now.timestamp() + self.ttl_s, UTC),
                report.customers,
                bits,
                report.bytes,
                codec.tag.hex(),
                available_at,
            )
            flat = [x for kv in new.to_fields().items() for x in kv]
            blocked = self.client.eval(
                _FLIP, 1, self.pointer_key, str(int(as_of.timestamp())), *flat
            )
        except Exception as exc:  # bad input or Redis trouble: the partial generation goes
            if report.generation is not None:
                if self._drop_generation(report.generation, bits):
                    self._unregister(report.generation)  # else the next load removes it
            serving = _still_serving(previous)
            if isinstance(exc, redis.RedisError):
                message = explain(exc, self.where)
            elif isinstance(exc, OnlineStoreError):
                message = str(exc)
            else:
                message = f"{type(exc).__name__}: {exc}"
            raise OnlineStoreError(f"materialization failed: {message}; {serving}") from exc
        if blocked is not None:  # a newer snapshot was flipped in meanwhile: this one is stale
            if self._drop_generation(generation, bits):
                self._unregister(generation)
            report.skipped = f"a newer as_of ({int(blocked)}) was flipped in meanwhile"
            return report
        self._pointer = (-math.inf, None, None)  # read again: serving may still be the previous
        if previous is not None:
            # The replaced generation serves until the new one is available, then lingers.
            linger = self.superseded_ttl_s + int(
                max(((available_at or clock) - clock).total_seconds(), 0)
            )
            self._remember(previous, linger)
            self._retire(previous, report, linger)
        self._unregister(generation)  # left behind, the next load sees it serving: kept
        report.buckets = 1 << bits
        report.seconds = time.perf_counter() - began
        memory_after = self._used_memory()
        if memory_before is not None and memory_after is not None:
            report.redis_memory_delta = memory_after - memory_before
        return report

    def _write_records(
        self, codec: RecordCodec, generation: int, bits: int, batches
    ) -> tuple[int, int]:
        """Encode every batch as it comes, then write the records bucket by bucket: one HSET
        per bucket per chunk. Only the finished records are sorted (pointers, not rows), and
        at most ``chunk_rows`` of them are held at once. Returns (bytes, records) written."""
        written, rows, chunk, held, expiring = 0, 0, [], 0, set()
        for batch in batches:
            buckets, fields = slots(batch.column("customer_digest"), bits)
            chunk.append((buckets, np.array(fields, object), codec.encode(batch)))
            held += batch.num_rows
            rows += batch.num_rows
            if held >= self.chunk_rows:
                written += self._write_chunk(generation, chunk, expiring)
                chunk, held = [], 0
        return written + self._write_chunk(generation, chunk, expiring), rows

    def _write_chunk(self, generation: int, chunk: list, expiring: set[int]) -> int:
        """HSET the chunk's records bucket by bucket; a bucket's TTL is set with its first
        records (so a run that dies half-way leaves nothing that never expires)."""
        if not chunk:
            return 0
        buckets = np.concatenate([c[0] for c in chunk])
        order = np.argsort(buckets, kind="stable")
        buckets = buckets[order]
        fields = np.concatenate([c[1] for c in chunk])[order]
        values = np.concatenate([np.array(c[2], object) for c in chunk])[order]
        bounds = [0, *(np.flatnonzero(np.diff(buckets)) + 1).tolist(), len(buckets)]
        commands = []
        for start, end in itertools.pairwise(bounds):
            bucket = int(buckets[start])
            key = self.bucket_key(generation, bucket)
            args = np.empty(2 * (end - start) + 2, object)
            args[0], args[1], args[2::2], args[3::2] = (
                "HSET",
                key,
                fields[start:end],
                values[start:end],
            )
            commands.append((key, tuple(args.tolist())))
            if bucket not in expiring:
                expiring.add(bucket)
                commands.append((key, ("EXPIRE", key, self.ttl_s)))
        self._send(commands)
        return sum(map(len, values))

    def _send(self, commands: list[tuple[str, tuple]]) -> list:
        return self.transport.execute(commands)

    def _retire(self, previous: Generation, report: MaterializationReport, linger: int) -> None:
        """The superseded generation lingers for ``linger`` seconds (it serves until the new one
        is available, then readers may still hold its pointer), not for its whole TTL."""
        if previous.id == report.generation:
            return
        try:
            keys = self._bucket_keys(previous.id, previous.bucket_bits)
            self._pipelined("EXPIRE", keys, linger)
        except OnlineStoreError as exc:
            report.warnings.append(f"generation {previous.id} keeps its TTL: {exc}")

    def _remember(self, previous: Generation, linger: int) -> None:
        """Keep the replaced generation's pointer for as long as its records linger."""
        fields = [x for kv in previous.to_fields().items() for x in kv]
        with contextlib.suppress(OnlineStoreError, redis.RedisError):
            self._send(
                [
                    (self.previous_key, ("DEL", self.previous_key)),
                    (self.previous_key, ("HSET", self.previous_key, *fields)),
                    (self.previous_key, ("EXPIRE", self.previous_key, linger)),
                ]
            )

    def pinned(self) -> dict[str, str] | None:
        """The as_of an operator rolled back, with the reason and when; None when none."""
        fields = self._hash(self.pin_key)
        return {k.decode(): v.decode() for k, v in fields.items()} if fields else None

    def roll_back(self, reason: str) -> tuple[Generation, Generation]:
        """Serve the generation the current one replaced again (a bad snapshot got through):
        the pointer moves back, the bad as_of is pinned so that neither the refill sensor nor
        a re-run loads it again (a newer snapshot does), the restored generation gets its full
        TTL back. Returns (restored, rolled back). Only within the superseded generation's
        lifetime (RISK_ONLINE_ROLLBACK_WINDOW_S): its records must still be there."""
        current = self.current_generation(fresh=True)
        fields = self._hash(self.previous_key)
        if current is None or not fields:
            raise OnlineStoreError(
                "no previous generation to roll back to (it lives for the rollback window "
                "after a load)"
            )
        previous = Generation.from_fields(fields)
        keys = self._bucket_keys(previous.id, previous.bucket_bits)
        if sum(self._pipelined("HLEN", keys)) != previous.customers:
            raise OnlineStoreError(f"generation {previous.id}'s records are gone: cannot restore")
        now = datetime.now(UTC)
        restored = dataclasses.replace(
            previous,
            expires_at=datetime.fromtimestamp(now.timestamp() + self.ttl_s, UTC),
            available_at=None,  # an operator's way back serves at once
        )
        pin = {
            "as_of": str(int(current.as_of.timestamp())),
            "generation": str(current.id),
            "reason": reason,
            "at": now.isoformat(),
        }
        flat = [x for kv in restored.to_fields().items() for x in kv]
        self._send(
            [
                (self.pointer_key, ("DEL", self.pointer_key)),
                (self.pointer_key, ("HSET", self.pointer_key, *flat)),
                (self.pin_key, ("HSET", self.pin_key, *[x for kv in pin.items() for x in kv])),
                (self.pin_key, ("EXPIRE", self.pin_key, self.ttl_s)),
                (self.previous_key, ("DEL", self.previous_key)),
            ]
        )
        self._pipelined("EXPIRE", keys, self.ttl_s)
        self._retire(
            current, MaterializationReport(restored.id, restored.as_of), self.superseded_ttl_s
        )
        self._pointer = (-math.inf, None, None)
        return restored, current

    def _register(self, generation: int, bits: int) -> None:
        self._send(
            [
                (self.loading_key, ("HSET", self.loading_key, str(generation), str(bits))),
                (self.loading_key, ("EXPIRE", self.loading_key, self.ttl_s)),
            ]
        )

    def _unregister(self, *generations: int) -> None:
        if generations:
            with contextlib.suppress(OnlineStoreError, redis.RedisError):
                self._send([(self.loading_key, ("HDEL", self.loading_key, *generations))])

    def remove_stray_generations(self) -> list[int]:
        """Remove the records of generations whose load died half way (kill -9, a lost host,
        Redis gone while cleaning up): registered under ``loading`` and neither serving
        (``current``), kept for a rollback (``previous``) nor pinned by one. Returns their ids.

        Loads run one at a time (one Dagster run at a time): a load running beside this call
        would lose its records (and normally fail its completeness check). So only a load
        calls it, never a sensor, which runs beside the runs."""
        loading = {int(g): int(bits) for g, bits in self._hash(self.loading_key).items()}
        if not loading:
            return []
        keep = {g.id for g in [self.current_generation(fresh=True)] if g is not None}
        previous, pinned = self._hash(self.previous_key), self.pinned()
        if previous:
            keep.add(int(previous[b"generation"]))
        if pinned and pinned.get("generation"):
            keep.add(int(pinned["generation"]))
        stray = sorted(g for g in loading if g not in keep)
        for generation in stray:
            self._pipelined("UNLINK", self._bucket_keys(generation, loading[generation]))
        self._unregister(*loading)
        return stray

    def _drop_generation(self, generation: int, bits: int) -> bool:
        """Best effort: a failed generation's keys go now (else the next load removes them,
        or their TTL). True when they went."""
        try:
            self._pipelined("UNLINK", self._bucket_keys(generation, bits))
        except (OnlineStoreError, redis.RedisError):
            return False
        return True

    def drop(self) -> int:
        """Remove every key of this feature-set version (a retired feature set)."""
        keys = list(self.client.scan_iter(match=f"{self.prefix}:*", count=1000))
        if keys:
            self._pipelined("UNLINK", keys)
        self._pointer = (-math.inf, None, None)
        return len(keys)

    def _pipelined(self, command: str, keys: list[str], *args) -> list:
        """``command key *args`` for every key, in one pipeline per server."""
        return self._send([(key, (command, key, *args)) for key in keys])

    # -- the server -------------------------------------------------------------------------

    def info(self, section: str) -> list[dict]:
        """``INFO section`` of every server (one, or each node of a cluster)."""
        info = self.client.info(section)
        return (
            list(info.values()) if info and isinstance(next(iter(info.values())), dict) else [info]
        )

    def _used_memory(self) -> int | None:
        with contextlib.suppress(redis.RedisError):
            return sum(int(node["used_memory"]) for node in self.info("memory"))
        return None

    def _check_memory(self, customers: int, used: int | None, previous) -> None:
        """Fail before writing anything when the new generation cannot fit under maxmemory."""
        nodes = self.info("memory")
        limit = sum(int(n.get("maxmemory", 0)) for n in nodes)
        if not limit or used is None or any(int(n.get("maxmemory", 0)) == 0 for n in nodes):
            return
        per_customer = previous.bytes / previous.customers if previous and previous.customers else 0
        needed = customers * (max(per_customer, 100.0) + 40)  # records + listpack overhead
        if used + needed > limit:
            raise OnlineStoreError(
                f"Redis at {self.where} is short of memory: the new generation needs "
                f"~{needed / 2**20:.1f} MiB, {max(limit - used, 0) / 2**20:.1f} MiB are free of "
                f"maxmemory {limit / 2**20:.1f} MiB; nothing was written; "
                + _still_serving(previous)
            )

    def _server_warnings(self) -> list[str]:
        """Settings that cost memory or put serving data at risk (config may be disallowed on
        managed services: then nothing is said)."""
        try:
            config = self.client.config_get("*max-*")
        except redis.RedisError:
            return []
        if config and isinstance(next(iter(config.values())), dict):  # cluster: per node
            config = next(iter(config.values()))
        warnings = []
        for name, wanted in SERVER_CONFIG.items():
            alias = name.replace("ziplist", "listpack")
            have = config.get(name) or config.get(alias)
            if have is not None and int(have) < int(wanted):
                warnings.append(
                    f"{alias} is {have} (< {wanted}): buckets lose their compact "
                    "encoding and use about twice the memory"
                )
        policy = config.get("maxmemory-policy", "noeviction")
        if policy != "noeviction":
            warnings.append(f"maxmemory-policy is {policy}: Redis may evict serving records")
        return warnings


def _still_serving(previous: Generation | None) -> str:
    if previous is None:
        return "nothing was serving before"
    return f"generation {previous.id} (as_of {previous.as_of:%Y-%m-%d}) keeps serving"
