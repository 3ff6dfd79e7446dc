"""Benchmark: the online store against one local Redis (persistence on, as production runs it).

    python -m benchmarks.online_store                      # 1M customers
    python -m benchmarks.online_store --customers 100000   # a quick look

Phases, all in this run, against the same server:
1. encodings: 40 float features for --encoding-customers customers stored three ways (a hash
   per customer with a field per feature, a packed record per customer key, packed records in
   bucket hashes): Redis memory per customer (INFO used_memory delta) and single-lookup latency;
2. materialization: a snapshot of --customers customers with the registry's real columns,
   written as a Delta partition, loaded the way the asset loads it (Delta -> DuckDB -> Redis) in
   a child process (so its peak RSS is its own): customers/s and peak RSS, medians of --rounds;
3. lookups: ``get`` of one customer (p50/p95/p99 over --lookups calls) against a raw ``GET`` of
   a value of the same size, interleaved call by call; ``get_many`` of 100 customers;
4. memory: the 40-float layout through the real writer at --customers customers.
"""

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from riskcore.timestamps import as_of_time

AS_OF = date(2026, 3, 1)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _micros(samples: list[int]) -> dict:
    us = [s / 1000 for s in samples]
    return {f"p{p}": round(_pct(us, p), 1) for p in (50, 95, 99)}


def medians(runs: list[dict]) -> dict:
    """Per percentile, the median over rounds of ``_micros`` results."""
    return {p: statistics.median(r[p] for r in runs) for p in ("p50", "p95", "p99")}


def float_feature_set(n: int = 40):
    from riskcore.feature_set import FeatureColumn, FeatureSet

    keys = [
        FeatureColumn("customer_id", "varchar", "key"),
        FeatureColumn("as_of", "timestamp with time zone", "key"),
        FeatureColumn("as_of_date", "date", "key"),
    ]
    features = [FeatureColumn(f"f{i:02d}", "double", "feature") for i in range(n)]
    return FeatureSet(f"fs_float{n}", tuple(keys + features))


def _timed_lookups(calls: int, *fns) -> list[list[int]]:
    """Call each function in turn, ``calls`` times: interleaved, so noise hits all alike."""
    samples: list[list[int]] = [[] for _ in fns]
    for _ in range(calls):
        for fn, out in zip(fns, samples, strict=True):
            began = time.perf_counter_ns()
            fn()
            out.append(time.perf_counter_ns() - began)
    return samples


def encodings(server, customers: int, calls: int) -> dict:
    """The same 40 float features stored three ways."""
    import numpy as np

    from riskcore.codec import with_digests
    from riskcore.online_store import OnlineStore
    from tests.snapshot_tables import snapshot_table

    fs = float_feature_set()
    table = snapshot_table(fs, customers, AS_OF)
    client = server.client()
    ids = table["customer_id"].to_pylist()
    matrix = np.column_stack([table[c.name].to_numpy(zero_copy_only=False) for c in fs.features])
    names = [c.name.encode() for c in fs.features]
    results = {}

    def measure(name: str, write, read) -> None:
        client.flushall()
        before = client.info("memory")["used_memory"]
        write()
        per_customer = (client.info("memory")["used_memory"] - before) / customers
        picks = [random.choice(ids) for _ in range(calls)]
        it = iter(picks)
        (samples,) = _timed_lookups(calls, lambda: read(next(it)))
        results[name] = {"bytes_per_customer": round(per_customer, 1), **_micros(samples)}
        _log(f"encoding {name}: {results[name]}")

    def hash_per_customer_write():
        pipe = client.pipeline(transaction=False)
        for i, cid in enumerate(ids):
            row = matrix[i].astype("<f4")
            pipe.hset(f"h:{cid}", mapping=dict(zip(names, (v.tobytes() for v in row), strict=True)))
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()

    def hash_per_customer_read(cid):
        values = client.hgetall(f"h:{cid}")
        return np.frombuffer(b"".join(values[n] for n in names), "<f4")

    store = OnlineStore(client, fs.version)

    def packed_per_customer_write():
        from riskcore.codec import RecordCodec

        codec = RecordCodec(fs)
        values = codec.encode(table)
        pipe = client.pipeline(transaction=False)
        for i, (cid, value) in enumerate(zip(ids, values, strict=True)):
            pipe.set(f"s:{cid}", value)
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
        packed_per_customer_write.codec = codec

    def packed_per_customer_read(cid):
        return packed_per_customer_write.codec.decode(cid, client.get(f"s:{cid}"))

    def buckets_write():
        store.write_generation(
            [with_digests(table)], feature_set=fs, as_of=as_of_time(AS_OF), customers=customers
        )

    measure(
        "hash per customer (a field per feature)", hash_per_customer_write, hash_per_customer_read
    )
    measure("packed record per customer key", packed_per_customer_write, packed_per_customer_read)
    measure("packed records in bucket hashes (chosen)", buckets_write, store.get)
    client.flushall()
    return results


def write_snapshot(lakehouse_root: Path, customers: int) -> None:
    from featurestore.registry import load_feature_set
    from resources.lakehouse import CUSTOMER_FEATURES, Lakehouse
    from tests.snapshot_tables import snapshot_table

    table = snapshot_table(load_feature_set(), customers, AS_OF)
    lakehouse = Lakehouse(root_uri=str(lakehouse_root))
    lakehouse.replace_partitions(
        CUSTOMER_FEATURES, table, ["as_of_date"], "as_of_date >= '2000-01-01'"
    )


def child_load(lakehouse_root: str, redis_url: str) -> None:
    """One materialization as the asset runs it; prints its report and this process's peak RSS."""
    from assets.features.online import load_snapshot
    from featurestore.registry import load_feature_set
    from resources.lakehouse import Lakehouse
    from riskcore.online_store import OnlineStore, connect

    fs = load_feature_set()
    store = OnlineStore(connect(redis_url), fs.version)
    report = load_snapshot(Lakehouse(root_uri=lakehouse_root), store, fs, AS_OF, log=lambda _: None)
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report the
    # parent benchmark's peak.
    status = Path("/proc/self/status").read_text().splitlines()
    peak_mb = int(next(line for line in status if line.startswith("VmHWM")).split()[1]) / 1024
    print(
        json.dumps(
            {
                "customers": report.customers,
                "seconds": report.seconds,
                "customers_per_s": report.customers_per_second,
                "peak_rss_mb": peak_mb,
                "memory_delta": report.redis_memory_delta,
                "bytes": report.bytes,
            }
        )
    )


def materialize(lakehouse_root: Path, redis_url: str, rounds: int) -> dict:
    runs = []
    for i in range(rounds):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.online_store",
                "--child-load",
                str(lakehouse_root),
                redis_url,
            ],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        _log(f"materialization {i + 1}: {runs[-1]}")
    med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
    return {
        "customers": runs[0]["customers"],
        "customers_per_s": round(med("customers_per_s")),
        "customers_per_s_range": [
            round(min(r["customers_per_s"] for r in runs)),
            round(max(r["customers_per_s"] for r in runs)),
        ],
        "seconds": round(med("seconds"), 2),
        "peak_rss_mb": round(med("peak_rss_mb")),
        "redis_bytes_per_customer": round(med("memory_delta") / runs[0]["customers"], 1),
        "record_bytes_per_customer": round(runs[0]["bytes"] / runs[0]["customers"], 1),
    }


def lookups(redis_url: str, calls: int, rounds: int) -> dict:
    from featurestore.registry import load_feature_set
    from riskcore.online_store import OnlineStore, connect

    client = connect(redis_url)
    store = OnlineStore(client, load_feature_set().version)
    generation = store.current_generation()
    ids = [f"c{i:09d}" for i in random.sample(range(generation.customers), 5000)]
    size = generation.bytes // generation.customers
    client.set("raw", b"x" * size)
    single, raw, many = [], [], []
    for _ in range(rounds):
        picks = iter(random.choices(ids, k=calls))
        ours, plain = _timed_lookups(
            calls, lambda p=picks: store.get(next(p)), lambda: client.get("raw")
        )
        batches = iter([random.sample(ids, 100) for _ in range(calls // 10)])
        (hundred,) = _timed_lookups(calls // 10, lambda b=batches: store.get_many(next(b)))
        single.append(_micros(ours))
        raw.append(_micros(plain))
        many.append(_micros(hundred))
        _log(f"get: {single[-1]}  raw GET: {raw[-1]}  get_many(100): {many[-1]}")
    out = {
        "get_us": medians(single),
        "raw_get_us": medians(raw),
        "get_many_100_us": medians(many),
        "value_bytes": size,
    }
    out["get_over_raw"] = {
        p: round(out["get_us"][p] / out["raw_get_us"][p], 2) for p in out["get_us"]
    }
    return out


def float_memory(server, customers: int) -> float:
    from riskcore.codec import with_digests
    from riskcore.online_store import OnlineStore
    from tests.snapshot_tables import snapshot_table

    fs = float_feature_set()
    table = with_digests(snapshot_table(fs, customers, AS_OF + timedelta(days=1), seed=1))
    client = server.client()
    store = OnlineStore(client, fs.version)
    report = store.write_generation(
        table.to_batches(100_000), feature_set=fs, as_of=as_of_time(AS_OF), customers=customers
    )
    return round(report.redis_memory_delta / customers, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--encoding-customers", type=int, default=200_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child-load", nargs=2, metavar=("LAKEHOUSE", "REDIS_URL"))
    args = parser.parse_args()
    if args.child_load:
        return child_load(*args.child_load)

    from resources.local_redis import LocalRedis

    with tempfile.TemporaryDirectory() as tmp, LocalRedis(Path(tmp) / "redis") as server:
        _log(f"redis-server on port {server.port} (appendonly yes, everysec)")
        results = {"encodings": encodings(server, args.encoding_customers, args.lookups)}
        _log(f"writing a {args.customers:,}-customer snapshot to Delta")
        write_snapshot(Path(tmp) / "lakehouse", args.customers)
        results["materialization"] = materialize(Path(tmp) / "lakehouse", server.url, args.rounds)
        results["lookups"] = lookups(server.url, args.lookups, args.rounds)
        server.client().flushall()
        results["float40_bytes_per_customer"] = float_memory(server, args.customers)
    print(json.dumps(results, indent=2))
    m, lk = results["materialization"], results["lookups"]
    print(
        f"\nmaterialization: {m['customers_per_s']:,} customers/s (goal >= 200,000), peak RSS "
        f"{m['peak_rss_mb']} MB (goal < 1024)\n"
        f"get p99 {lk['get_us']['p99']} us = {lk['get_over_raw']['p99']}x raw GET (goal <= 1.5x)\n"
        f"get_many(100) p99 {lk['get_many_100_us']['p99']} us (goal <= 2000)\n"
        f"memory, 40 float features: {results['float40_bytes_per_customer']} B/customer "
        "(goal <= 200)"
    )


if __name__ == "__main__":
    main()
