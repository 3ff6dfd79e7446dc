"""Benchmark: the SDK's point-in-time join (`historical_features`) at a data scientist's scale.

    make bench-sdk                                   # 1M entity rows x 90 snapshots of 1M
    python -m benchmarks.sdk --customers 100000 --entities 100000 --days 10   # a quick look

It generates (once, into a cache folder it reuses) 90 daily snapshot partitions of 1M
customers as a real Delta table, written as the export writes one (``Lakehouse``'s writer:
row groups of 128k rows; 10 of the mart's numeric features; 90M snapshot rows), and 1M
entity rows (customer ids, ~9% unknown to any snapshot, moments spread over the 90 days) as
Parquet. Then each contender runs in its own process (its peak RSS is its own), Parquet to
Parquet, in alternating rounds (medians):

* ``sdk``: ``historical_features(entities.parquet, features, output=...parquet)``;
* ``duckdb``: the hand-written DuckDB query with the same semantics over the same files (an
  ``ASOF JOIN`` of each row to the partition available last, then an equality join on
  customer, ``COPY ... TO`` Parquet in input order) - the floor;
* ``feast``: Feast's ``get_historical_features`` (its DuckDB offline store) on the same rows
  and the same Parquet files, when its own virtualenv exists (``make bench-sdk`` builds it from
  ``benchmarks/feast_requirements.txt``; Feast's dependencies clash with ours). Feast cannot
  compute ``as_of + lag``, so ``benchmarks/feast_pit.py`` reads a copy of the snapshots with
  that column, made once and not timed. Feast's TTL rule (48 h here) differs from ours, so
  its values need not match: a speed comparison only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from resources.lakehouse import CUSTOMER_FEATURES as SNAPSHOTS

FIRST = date(2026, 1, 1)
LAG = timedelta(hours=6)
FEATURES = [
    "amount_mean_7d",
    "amount_std_7d",
    "amount_mean_30d",
    "amount_std_30d",
    "weekend_ratio_30d",
    "night_ratio_30d",
    "online_ratio_30d",
    "amount_mean_90d",
    "amount_std_90d",
    "mean_gap_hours_30d",
]
FEAST_PYTHON = Path(os.environ.get("FEAST_PYTHON", Path(".tools/feast/bin/python")))


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def build(cache: Path, customers: int, days: int, entities: int) -> None:
    """The snapshot Delta table and the entity rows, unless the cache holds them."""
    from resources.lakehouse import Lakehouse

    done = cache / "built.json"
    wanted = {
        "customers": customers,
        "days": days,
        "entities": entities,
        "features": FEATURES,
        "layout": "lakehouse",  # written by Lakehouse.replace_partitions, as the export writes
    }
    if done.exists() and json.loads(done.read_text()) == wanted:
        _log(f"reusing {cache}")
        return
    shutil.rmtree(cache, ignore_errors=True)  # Feast's copy of the snapshots too
    cache.mkdir(parents=True)
    lakehouse = Lakehouse(root_uri=str(cache / "lakehouse"))
    rng = np.random.default_rng(0)
    ids = pa.array([f"cus_{i:09d}" for i in range(customers)])
    for d in range(days):
        day = FIRST + timedelta(days=d)
        values = rng.lognormal(3, 1, (len(FEATURES), customers)).round(2)
        values[rng.random(values.shape) < 0.05] = np.nan
        snapshot = pa.table(
            {
                "customer_id": ids,
                "as_of": pa.array(np.full(customers, _midnight(day)), pa.timestamp("us", "UTC")),
                "as_of_date": pa.array(np.full(customers, day), pa.date32()),
                **{
                    name: pa.array(values[i], mask=np.isnan(values[i]))
                    for i, name in enumerate(FEATURES)
                },
            }
        )
        lakehouse.replace_partitions(SNAPSHOTS, snapshot, ["as_of_date"], f"as_of_date = '{day}'")
        if d % 10 == 9:
            _log(f"snapshot {d + 1}/{days} written")
    seconds = rng.integers(0, days * 86_400 * 1_000_000, entities)
    start = int(_midnight(FIRST).timestamp() * 1_000_000)
    pq.write_table(
        pa.table(
            {
                "customer_id": [
                    f"cus_{i:09d}" for i in rng.integers(0, int(customers * 1.1), entities)
                ],
                "event_ts": pa.array(start + seconds, pa.int64()).cast(pa.timestamp("us", "UTC")),
                "row": np.arange(entities),
            }
        ),
        cache / "entities.parquet",
    )
    done.write_text(json.dumps(wanted))


def run_sdk(cache: Path, out: Path) -> dict:
    from featurestore import historical_features
    from resources.lakehouse import Lakehouse

    began = time.perf_counter()
    written = historical_features(
        cache / "entities.parquet",
        FEATURES,
        lag=LAG,
        output=out,
        lakehouse=Lakehouse(root_uri=str(cache / "lakehouse")),
    )
    return {"rows": written.rows, "seconds": time.perf_counter() - began}


def run_duckdb(cache: Path, out: Path) -> dict:
    """The floor: the same join written by hand over the same files."""
    import duckdb

    snapshots = str(cache / "lakehouse" / SNAPSHOTS / "as_of_date=*" / "*.parquet")
    picked = ", ".join(f"s.{name}" for name in FEATURES)
    lag_us = int(LAG.total_seconds() * 1_000_000)
    began = time.perf_counter()
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        con.execute(f"set memory_limit = '3GB'; set temp_directory = '{out.parent / 'spill'}'")
        con.execute(f"""
            copy (
                with entities as (
                    select *, row_number() over () as n
                    from read_parquet('{cache / "entities.parquet"}')
                ),
                partitions as (
                    select distinct as_of, as_of + to_microseconds({lag_us}) as available_at
                    from read_parquet('{snapshots}')
                ),
                chosen as (
                    select e.*, p.as_of as snapshot_as_of from entities as e
                    asof left join partitions as p on e.event_ts >= p.available_at
                )
                select c.* exclude (n), s.customer_id is not null as customer_known, {picked}
                from chosen as c left join read_parquet('{snapshots}') as s
                    on s.as_of = c.snapshot_as_of and s.customer_id = c.customer_id
                order by c.n
            ) to '{out}' (format parquet)
        """)
        rows = con.sql(f"select count(*) from read_parquet('{out}')").fetchall()[0][0]
    return {"rows": rows, "seconds": time.perf_counter() - began}


def contender(name: str, cache: Path) -> dict:
    """One run of ``name`` in a child process: its time, rows and peak RSS."""
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        out = Path(tmp) / "out.parquet"
        if name == "feast":
            args = [
                str(FEAST_PYTHON),
                "benchmarks/feast_pit.py",
                "--snapshots",
                str(cache / "lakehouse" / SNAPSHOTS),
                "--entities",
                str(cache / "entities.parquet"),
                "--features",
                ",".join(FEATURES),
                "--lag-hours",
                str(LAG.total_seconds() / 3600),
                "--prep-dir",  # its copy of the snapshots with as_of + lag, made once
                str(cache / "feast_prep"),
            ]
        else:
            args = [sys.executable, "-m", "benchmarks.sdk", "--child", name, "--cache", str(cache)]
            args += ["--out", str(out)]
        done = subprocess.run(args, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--child", choices=["sdk", "duckdb"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = (run_sdk if args.child == "sdk" else run_duckdb)(args.cache, args.out)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    from riskcore import settings

    cache = args.cache or settings.load().data_dir / "bench_sdk" / (
        f"{args.customers}x{args.days}-{args.entities}"
    )
    build(cache, args.customers, args.days, args.entities)
    names = ["sdk", "duckdb"] + (["feast"] if FEAST_PYTHON.exists() else [])
    if "feast" not in names:
        _log(f"no Feast virtualenv at {FEAST_PYTHON}: Feast is left out (make bench-sdk builds it)")
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for round_ in range(args.rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            runs[name].append(contender(name, cache))
            r = runs[name][-1]
            _log(f"round {round_ + 1} {name}: {r['seconds']:.2f} s, {r['peak_rss_mb']:,.0f} MB")
    print(
        f"\n{args.entities:,} entity rows x {args.days} snapshots of {args.customers:,} customers "
        f"({args.days * args.customers:,} snapshot rows), {len(FEATURES)} features, "
        f"medians of {args.rounds} rounds:"
    )
    median = {n: statistics.median(r["seconds"] for r in rs) for n, rs in runs.items()}
    for name, rs in runs.items():
        rows = rs[-1]["rows"]
        print(
            f"  {name:<7} {median[name]:7.2f} s  {rows / median[name]:>12,.0f} rows/s  "
            f"peak RSS {max(r['peak_rss_mb'] for r in rs):>7,.0f} MB  "
            f"[{min(r['seconds'] for r in rs):.2f}-{max(r['seconds'] for r in rs):.2f}]"
        )
    print(f"  sdk / hand-written duckdb: {median['sdk'] / median['duckdb']:.2f}x (goal <= 1.3x)")
    if "feast" in median:
        print(f"  sdk rows/s / feast rows/s: {median['feast'] / median['sdk']:.1f}x (goal >= 5x)")


if __name__ == "__main__":
    main()
