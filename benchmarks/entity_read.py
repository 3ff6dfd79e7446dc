"""Benchmark: one score's online read of four entities against today's single-customer lookup.

    make bench-entity-read            # 1M customers, 1M devices, 50k merchants, 1M cards
    python -m benchmarks.entity_read --customers 100000   # a quick look

Each entity's snapshot (the registry's real columns, random values) is loaded as a generation
into one local Redis (persistence on, as production runs it). Then, interleaved call by call
so that noise hits both alike, p50/p95/p99 over --lookups calls, medians of --rounds:

* **single**: ``OnlineStore.get`` of one customer (the lookup before the entities);
* **four**: the customer's, device's, merchant's and card's records read as a score reads them
  (``serving/scorer.py``): each store's ``lookup_commands``, sent together through one
  transport (one packet, one round trip), each reply decoded.

Goal (issue #18): four's p99 <= 1.5x single's.
"""

import argparse
import hashlib
import json
import random
import tempfile
from datetime import date
from pathlib import Path

from benchmarks.online_store import _log, _micros, _timed_lookups, medians
from riskcore.timestamps import as_of_time

AS_OF = date(2026, 3, 1)


def _ids(entity: str, n: int) -> list[str]:
    if entity == "card":  # keyed hashes, as the requests carry them
        return [hashlib.sha256(f"card-{i}".encode()).hexdigest() for i in range(n)]
    return [f"{entity[0]}{i:09d}" for i in range(n)]


def _batches(feature_set, ids: list[str], key: str, seed: int, size: int = 250_000):
    """The snapshot in batches of ``size`` rows, made as the writer asks for them (bounded
    memory at 1M)."""
    import pyarrow as pa

    from riskcore.codec import with_digests
    from tests.snapshot_tables import snapshot_table

    for start in range(0, len(ids), size):
        part = ids[start : start + size]
        table = snapshot_table(feature_set, len(part), AS_OF, seed=seed + start)
        table = table.set_column(table.schema.get_field_index(key), key, pa.array(part))
        yield with_digests(table, key=key)


def load(server, counts: dict[str, int]) -> dict:
    """Each entity's generation; returns entity -> (store, ids, bytes per record)."""
    from featurestore.registry import load_feature_set
    from riskcore.feature_set import KEYS
    from riskcore.online_store import OnlineStore

    client, out = server.client(), {}
    for k, (entity, n) in enumerate(counts.items()):
        fs = load_feature_set(entity=entity)
        store, ids = OnlineStore(client, fs.version), _ids(entity, n)
        report = store.write_generation(
            _batches(fs, ids, KEYS[entity], seed=1_000_000 * k),
            feature_set=fs,
            as_of=as_of_time(AS_OF),
            customers=n,
        )
        _log(f"{entity}: {n:,} records, {report.bytes / n:.0f} B each, {report.seconds:.1f} s")
        out[entity] = (store, ids, report.bytes / n)
    return out


def measure(stores: dict, calls: int, rounds: int) -> dict:
    from riskcore.redis_transport import RedisTransport

    customers = stores["customer"][0]
    transport = RedisTransport(customers.client)  # one connection for the four, as serving
    samples = {
        entity: random.sample(ids, min(len(ids), 5000)) for entity, (_, ids, _) in stores.items()
    }

    def four() -> None:
        reads = [
            store.lookup_commands([random.choice(samples[e])])
            for e, (store, _, _) in stores.items()
        ]
        replies = transport.execute_reads(reads)
        for read, reply in zip(reads, replies, strict=True):
            read.decode(reply)

    single_runs, four_runs = [], []
    for _ in range(rounds):
        single, both = _timed_lookups(
            calls, lambda: customers.get(random.choice(samples["customer"])), four
        )
        single_runs.append(_micros(single))
        four_runs.append(_micros(both))
        _log(f"single: {single_runs[-1]}  four in one packet: {four_runs[-1]}")
    out = {"single_customer_us": medians(single_runs), "four_entities_us": medians(four_runs)}
    out["ratio"] = {
        p: round(out["four_entities_us"][p] / out["single_customer_us"][p], 2)
        for p in ("p50", "p95", "p99")
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--merchants", type=int, default=50_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from resources.local_redis import LocalRedis

    counts = {
        "customer": args.customers,
        "device": args.customers,
        "merchant": args.merchants,
        "card": args.customers,
    }
    with tempfile.TemporaryDirectory() as tmp, LocalRedis(Path(tmp) / "redis") as server:
        _log(f"redis-server on port {server.port} (appendonly yes, everysec)")
        stores = load(server, counts)
        used = server.client().info("memory")["used_memory"]
        results = {"records": counts, "redis_used_memory_mb": round(used / 2**20)}
        results["bytes_per_record"] = {e: round(b, 1) for e, (_, _, b) in stores.items()}
        results |= measure(stores, args.lookups, args.rounds)
    print(json.dumps(results, indent=2))
    r = results["ratio"]
    print(
        f"\nfour entities in one packet p99 {results['four_entities_us']['p99']} us = "
        f"{r['p99']}x one customer's lookup ({results['single_customer_us']['p99']} us) "
        "(goal <= 1.5x)"
    )


if __name__ == "__main__":
    main()
