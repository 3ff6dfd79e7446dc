"""Benchmark: generate N customers x (history + days), then time one daily snapshot partition.

    python -m benchmarks.snapshot_partition                     # 1M customers x (30 + 90) days
    python -m benchmarks.snapshot_partition --customers 50000   # a quick look

Phases:
1. generate: the synthetic source straight into raw Delta (reports the generator's rows/s and
   Delta's write rows/s separately); one day through the validating ingest is timed too;
2. history: the rolled-up days for all but the last day, as earlier daily runs left them;
3. partition (repeated, medians): the last day's partition end to end, exactly what the
   daily schedule runs: ``dbt build`` (rollup of the day, snapshot, dbt tests) and the Delta
   export. dbt's own start-up (wall - the nodes' execution times) is reported apart from the
   snapshot's compute; peak RSS is that of the dbt process (DuckDB runs inside it).
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import psutil


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _dbt(args: list[str], target: Path) -> tuple[float, dict, int]:
    """Run dbt; returns (wall seconds, run_results, peak RSS in MB of the dbt process)."""
    from resources import dbt_cli

    began = time.perf_counter()
    proc = subprocess.Popen(
        [dbt_cli.dbt_executable(), *args, "--quiet", "--target-path", str(target)],
        cwd=dbt_cli.DBT_PROJECT_DIR,
        env={**os.environ, **dbt_cli.dbt_env()},
    )
    watched, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:  # sample the dbt process's RSS (DuckDB runs inside it)
        with contextlib.suppress(psutil.Error):
            peak = max(peak, watched.memory_info().rss)
        time.sleep(0.02)
    wall = time.perf_counter() - began
    if proc.returncode:
        raise SystemExit(f"dbt {args[0]} failed ({proc.returncode})")
    results = json.loads((target / "run_results.json").read_text())
    return wall, results, peak // 2**20


def generate(customers: int, first: date, days: int) -> None:
    from assets.ingest.raw import ingest_day
    from assets.ingest.sources import RawSources
    from assets.ingest.synthetic import (
        GeneratorConfig,
        generate_labels,
        generate_transactions,
        population,
    )
    from resources.lakehouse import LABELS, TRANSACTIONS, Lakehouse

    config = GeneratorConfig(customers=customers, start=first)
    lakehouse = Lakehouse()
    began = time.perf_counter()
    population(config)
    _log(f"population of {customers:,} customers in {time.perf_counter() - began:.1f} s")
    gen_s = label_s = write_s = 0.0
    rows = 0
    for i in range(days - 1):
        day = first + timedelta(days=i)
        t0 = time.perf_counter()
        tx = generate_transactions(config, day)
        t1 = time.perf_counter()
        labels = generate_labels(config, day)
        t2 = time.perf_counter()
        lakehouse.replace_day(TRANSACTIONS, tx, "event_date", day)
        lakehouse.replace_day(LABELS, labels, "label_date", day)
        t3 = time.perf_counter()
        gen_s, label_s, write_s = gen_s + t1 - t0, label_s + t2 - t1, write_s + t3 - t2
        rows += tx.num_rows
        if i % 10 == 0:
            _log(f"day {day}: {rows:,} transactions so far")
    # The last day goes through the validating ingest, as the daily asset runs it.
    last = first + timedelta(days=days - 1)
    t0 = time.perf_counter()
    report = ingest_day("transactions", last, RawSources(customers=customers), lakehouse)
    ingest_s = time.perf_counter() - t0
    ingest_day("labels", last, RawSources(customers=customers), lakehouse)
    rows += report.rows
    print(
        f"\ngenerator: {rows:,} transactions over {days} days, "
        f"{rows / gen_s:,.0f} rows/s (transactions), labels {label_s:.1f} s in all\n"
        f"Delta writes: {rows / write_s:,.0f} rows/s\n"
        f"validating ingest of one day ({report.rows:,} rows, duplicate-id check against "
        f"all stored ids included): {ingest_s:.1f} s"
    )


def history(first: date, last: date, workdir: Path) -> None:
    variables = json.dumps({"start_date": str(first), "end_date": str(last)})
    wall, _, peak = _dbt(
        ["build", "--select", "+path:models/intermediate", "--vars", variables],
        workdir / "history",
    )
    _log(f"history rollups {first}..{last}: {wall:.1f} s, peak RSS {peak} MB")


def partition(day: date, workdir: Path, run: int) -> dict:
    from assets.features.export import export_snapshots
    from resources.lakehouse import Lakehouse

    variables = json.dumps({"start_date": str(day), "end_date": str(day)})
    wall, results, peak = _dbt(["build", "--vars", variables], workdir / f"partition-{run}")
    nodes = {r["unique_id"].split(".")[-1]: r["execution_time"] for r in results["results"]}
    models = {k: v for k, v in nodes.items() if k.startswith(("int_", "fct_", "stg_"))}
    tests = sum(v for k, v in nodes.items() if k not in models)
    began = time.perf_counter()
    counts, _ = export_snapshots(Lakehouse(), day + timedelta(days=1), day + timedelta(days=1))
    export_s = time.perf_counter() - began
    customers = sum(n for _, n in counts)
    return {
        "customers": customers,
        "snapshot_compute_s": sum(models.values()),
        "fct_s": models["fct_customer_features_daily"],
        "rollups_s": sum(v for k, v in models.items() if k.startswith("int_")),
        "dbt_tests_s": tests,
        "dbt_startup_s": wall - sum(nodes.values()),
        "dbt_wall_s": wall,
        "export_s": export_s,
        "end_to_end_s": wall + export_s,
        "peak_rss_mb": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--history-days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="skip generation and history")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.gettempdir()) / f"risk-bench-{args.customers}"
    os.environ["RISK_DATA_DIR"] = str(workdir / "data")
    os.environ.setdefault("RISK_DUCKDB_MEMORY_LIMIT", "3GB")
    from riskcore import settings

    total = args.days + args.history_days
    first = settings.load().first_day()
    last = first + timedelta(days=total - 1)
    _log(f"{args.customers:,} customers x {total} days; data in {workdir}")
    if not args.reuse:
        generate(args.customers, first, total)
        history(first, last - timedelta(days=1), workdir)
    runs = []
    for run in range(args.repeats):
        result = partition(last, workdir, run)
        _log(json.dumps({k: round(v, 2) for k, v in result.items()}))
        runs.append(result)
    print(
        f"\nDaily partition {last} (as_of {last + timedelta(days=1)}), {args.repeats} runs, "
        f"DuckDB memory_limit {os.environ['RISK_DUCKDB_MEMORY_LIMIT']}:"
    )
    print(f"{'':<22}{'median':>10}{'min':>10}{'max':>10}")
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(
            f"{key:<22}{statistics.median(values):>10.1f}{min(values):>10.1f}{max(values):>10.1f}"
        )
    median_compute = statistics.median(r["snapshot_compute_s"] for r in runs)
    print(f"snapshot customers/s (compute): {runs[0]['customers'] / median_compute:,.0f}")


if __name__ == "__main__":
    main()
