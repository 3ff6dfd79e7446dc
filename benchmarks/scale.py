"""`make bench-scale`: the nightly cycle at N customers, as the schedule runs it, stage by stage.

    python -m benchmarks.scale --customers 1000000 3000000 10000000
    python -m benchmarks.scale --customers 50000 --days 40      # a quick look

For each N, a world of N customers x ``--days`` days is built once into a cache folder
(``--cache``, default ``~/.cache/risk-feature-store/scale``) and reused: the raw history
generated straight into Delta and the earlier days rolled up by dbt, as earlier nightly runs
left them. Drift needs a champion: one small world (20k customers, same calendar) runs
`make demo` once into the cache and every N reads its MLflow registry.

Then the newest day's partition of ``daily_features`` runs ``--repeats`` times in this process
against a fresh ``redis-server`` (one process per N, so each N's peak RSS is its own): ingest and
validation of the day's ~0.2 purchases a customer and its labels, the day's rollups, the customer
snapshot and dbt's tests, the Delta export, the Redis load, drift, realized performance and the
asset checks. Per stage (a Dagster step, timed from its event log): wall, rows/s, peak RSS of
this process and its children (dbt's DuckDB), and the size of the table it writes. Redis memory
after the first run is the steady state (one generation); after the second, two generations are
held (the rollback window): the generation switch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
# A fixed calendar: the champion world and every N share it (drift compares like with like).
START = date(2026, 1, 1)
CHAMPION_CUSTOMERS = 20_000
CHAMPION_DAYS = 120
GOALS = {"cycle_s": 15 * 60, "peak_rss_gb": 8.0, "redis_steady_gb": 2.2, "redis_switch_gb": 4.5}


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _folder_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class RssSampler(threading.Thread):
    """Samples the RSS of this process and its children (dbt, and DuckDB inside it) every
    50 ms; ``peak(t0, t1)`` is the highest sample between two wall-clock times."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int]] = []
        self._done = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self._done.is_set():
            total = 0
            with contextlib.suppress(psutil.Error):
                total = me.memory_info().rss
                for child in me.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        if child.name() != "redis-server":  # Redis is reported apart
                            total += child.memory_info().rss
            self.samples.append((time.time(), total))
            self._done.wait(0.05)

    def stop(self) -> None:
        self._done.set()
        self.join()

    def peak(self, t0: float, t1: float) -> int:
        return max((rss for t, rss in self.samples if t0 <= t <= t1), default=0)


# --- building a world once --------------------------------------------------------------------


def _world_env(folder: Path, customers: int, mlflow: Path | None) -> dict[str, str]:
    env = {
        "RISK_DATA_DIR": str(folder / "data"),
        "RISK_CUSTOMERS": str(customers),
        "RISK_START_DATE": START.isoformat(),
        "RISK_AUTOMATIONS": "0",
    }
    if mlflow is not None:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{mlflow}"
    return env


def champion(cache: Path) -> Path:
    """A 20k-customer world through `make demo` (models trained and registered); its MLflow
    database, whose champion drift compares every N's snapshot with."""
    folder = cache / "champion"
    database = folder / "data" / "mlflow" / "mlflow.db"
    if (folder / "ready").exists():
        return database
    shutil.rmtree(folder, ignore_errors=True)
    end = START + timedelta(days=CHAMPION_DAYS - 1)
    env = _world_env(folder, CHAMPION_CUSTOMERS, None) | {"RISK_DEMO_END": end.isoformat()}
    _log(f"champion world: make demo at {CHAMPION_CUSTOMERS:,} customers into {folder}")
    subprocess.run(
        [sys.executable, "-m", "demo.run"],
        cwd=ROOT,
        env=_without_user_stores(os.environ) | env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (folder / "ready").write_text(end.isoformat())
    return database


def build_world(folder: Path, customers: int, days: int) -> None:
    """What earlier nightly runs left: the raw history of all but the last day and its rollups
    (markers ``raw`` and ``ready``), and the day before's snapshot, which the consistency check
    compares with (marker ``previous``)."""
    from assets.features.export import export_snapshots
    from benchmarks.snapshot_partition import _dbt, generate, history
    from resources.lakehouse import Lakehouse

    workdir = folder / "build"
    day = START + timedelta(days=days - 1)  # the cycle's day
    began = time.perf_counter()
    if not (folder / "raw").exists():
        generate(customers, START, days - 1)
        (folder / "raw").write_text(json.dumps({"customers": customers, "days": days}))
    if not (folder / "ready").exists():
        history(START, day - timedelta(days=1), workdir)
        (folder / "ready").write_text(json.dumps({"customers": customers, "days": days}))
    if not (folder / "previous").exists():
        before = str(day - timedelta(days=1))
        variables = json.dumps({"start_date": before, "end_date": before})
        _dbt(["build", "--select", "fct_customer_features_daily", "--vars", variables], workdir)
        export_snapshots(Lakehouse(), day, day)
        (folder / "previous").write_text(before)
    shutil.rmtree(workdir, ignore_errors=True)
    took = time.perf_counter() - began
    _log(f"world built in {took / 60:.1f} min: {_folder_bytes(folder / 'data') / 1e9:.1f} GB")


# --- the cycle ---------------------------------------------------------------------------------

# Each Dagster step's name in the report, and what its rows/s counts.
STAGES = {
    "online_customer_features_online_store_serves_newest_snapshot": (
        "check: Redis serves the newest snapshot",
        "customers",
    ),
    "lakehouse__customer_features_daily_consistent_with_previous": (
        "check: snapshot consistent with the day before",
        "customers",
    ),
    "raw__transactions": ("ingest + validation (purchases)", "purchases"),
    "raw__labels": ("ingest + validation (labels)", "labels"),
    "dbt_features": ("dbt: rollups, snapshot, tests", "customers"),
    "lakehouse__customer_features_daily": ("Delta export", "customers"),
    "online_customer_features": ("Redis load + check", "customers"),
    "monitoring__feature_drift": ("drift (PSI of every feature)", "customers"),
    "monitoring__realized_performance": ("realized performance", "customers"),
}


def _written(step: str, data: Path, redis_bytes: int) -> int:
    from resources.lakehouse import CUSTOMER_FEATURES, LABELS, TRANSACTIONS

    lake = data / "lakehouse"
    return {
        "raw__transactions": _folder_bytes(lake / TRANSACTIONS),
        "raw__labels": _folder_bytes(lake / LABELS),
        "dbt_features": _folder_bytes(data / "warehouse.duckdb"),
        "lakehouse__customer_features_daily": _folder_bytes(lake / CUSTOMER_FEATURES),
        "online_customer_features": redis_bytes,
        "monitoring__feature_drift": _folder_bytes(data / "reports"),
    }.get(step, 0)


def _rows(day: date) -> dict[str, int]:
    import pyarrow.compute as pc

    from resources.lakehouse import CUSTOMER_FEATURES, LABELS, TRANSACTIONS, Lakehouse

    lake = Lakehouse()
    count = lambda table, column, d: lake.dataset(table).count_rows(  # noqa: E731
        filter=pc.field(column) == d
    )
    return {
        "purchases": count(TRANSACTIONS, "event_date", day),
        "labels": count(LABELS, "label_date", day),
        "customers": count(CUSTOMER_FEATURES, "as_of_date", day + timedelta(days=1)),
    }


def _redis_memory(url: str) -> tuple[int, int]:
    import redis

    info = redis.Redis.from_url(url).info("memory")
    return info["used_memory"], info["used_memory_peak"]


def _dbt_nodes(since: float) -> dict[str, float]:
    """Seconds per dbt model (and its tests together) of the dbt build that ran after ``since``,
    from the run_results.json dagster-dbt leaves in its target folder."""
    from resources import dbt_cli

    found = [
        p
        for p in (dbt_cli.DBT_PROJECT_DIR / "target").glob("dbt_features-*/run_results.json")
        if p.stat().st_mtime >= since
    ]
    if not found:
        return {}
    results = json.loads(max(found, key=lambda p: p.stat().st_mtime).read_text())["results"]
    nodes: dict[str, float] = {}
    for r in results:
        kind, name = r["unique_id"].split(".")[0], r["unique_id"].split(".")[-1]
        key = name if kind == "model" else f"dbt {kind}s"
        nodes[key] = nodes.get(key, 0.0) + r["execution_time"]
    return nodes


def run_cycle(day: date, redis_url: str, sampler: RssSampler) -> dict:
    from dagster import DagsterEventType, DagsterInstance

    from definitions import defs

    instance = DagsterInstance.ephemeral()
    job = defs.resolve_job_def("daily_features")
    began_wall, began = time.time(), time.perf_counter()
    result = job.execute_in_process(
        partition_key=day.isoformat(),
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    wall = time.perf_counter() - began
    if not result.success:
        raise SystemExit(f"daily_features {day} failed")
    starts, ends = {}, {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[entry.step_key] = entry.timestamp
        elif event.event_type == DagsterEventType.STEP_SUCCESS:
            ends[entry.step_key] = entry.timestamp
    used, peak = _redis_memory(redis_url)
    steps = {
        step: {"s": ends[step] - starts[step], "peak_rss": sampler.peak(starts[step], ends[step])}
        for step in starts
        if step in ends
    }
    return {
        "wall_s": wall,
        "dbt_nodes": _dbt_nodes(began_wall),
        "peak_rss": sampler.peak(began_wall, time.time()),
        "steps": steps,
        "redis_used": used,
        "redis_peak": peak,
    }


# The user's own stores, which `make` exports: a world's runs and data stay out of them (its
# Dagster runs too: `make dev` would show another world's materializations)
_USER_STORES = (
    "RISK_LAKEHOUSE_URI",
    "RISK_DUCKDB_PATH",
    "RISK_LANDING_DIR",
    "REDIS_URL",
    "DAGSTER_HOME",
)


def _without_user_stores(env: os._Environ | dict) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in _USER_STORES}


def _use_world(folder: Path, customers: int, cache: Path) -> None:
    """This process's settings: the world's folder, the champion's registry, nothing else."""
    for inherited in _USER_STORES:
        os.environ.pop(inherited, None)
    os.environ.update(_world_env(folder, customers, champion(cache)))
    os.environ.setdefault("RISK_DUCKDB_MEMORY_LIMIT", "3GB")


def one(customers: int, days: int, cache: Path, repeats: int, out: Path) -> None:
    """One N in this process: build its world (in a process of its own, so the generator's
    memory is not counted in the cycle's), then run the cycle."""
    folder = cache / f"{customers}x{days}"
    _use_world(folder, customers, cache)
    if not ((folder / "ready").exists() and (folder / "previous").exists()):
        _log(f"building the world of {customers:,} customers x {days} days in {folder}")
        subprocess.run(
            [
                *(sys.executable, "-m", "benchmarks.scale", "--build", "--customers"),
                *(str(customers), "--days", str(days), "--cache", str(cache)),
            ],
            cwd=ROOT,
            check=True,
        )
    day = START + timedelta(days=days - 1)
    from resources.local_redis import LocalRedis

    # The project's own redis-server settings, without persistence: a fresh store for each N.
    server = LocalRedis(folder / "redis", extra_args=("--appendonly", "no", "--save", ""))
    server.start()
    os.environ["REDIS_URL"] = server.url
    sampler = RssSampler()
    sampler.start()
    runs = []
    try:
        for run in range(repeats):
            _log(f"{customers:,} customers: cycle {run + 1}/{repeats} for {day}")
            runs.append(run_cycle(day, server.url, sampler))
            _log(f"  {runs[-1]['wall_s']:.1f} s, Redis {runs[-1]['redis_used'] / 1e9:.2f} GB")
        redis_rss = psutil.Process(server.process.pid).memory_info().rss
    finally:
        sampler.stop()
        server.kill()
    data = folder / "data"
    rows = _rows(day)
    steps = {}
    for step in runs[0]["steps"]:
        seconds = statistics.median(r["steps"][step]["s"] for r in runs if step in r["steps"])
        label, unit = STAGES.get(step, (step, "customers"))
        steps[step] = {
            "label": label,
            "s": seconds,
            "rows": rows[unit],
            "unit": unit,
            "peak_rss": max(r["steps"][step]["peak_rss"] for r in runs if step in r["steps"]),
            "written": _written(step, data, runs[0]["redis_used"]),
        }
    result = {
        "customers": customers,
        "days": days,
        "day": day.isoformat(),
        "rows": rows,
        "cycle_s": statistics.median(r["wall_s"] for r in runs),
        "cycle_runs_s": [r["wall_s"] for r in runs],
        "peak_rss": max(r["peak_rss"] for r in runs),
        "redis_steady": runs[0]["redis_used"],
        "redis_switch": max(r["redis_peak"] for r in runs[1:]) if repeats > 1 else None,
        "redis_rss": redis_rss,
        "disk": _folder_bytes(data),
        "steps": steps,
        "dbt_nodes": {
            name: statistics.median(r["dbt_nodes"].get(name, 0.0) for r in runs)
            for name in runs[0]["dbt_nodes"]
        },
    }
    out.write_text(json.dumps(result, indent=1))


# --- the report ----------------------------------------------------------------------------------


def _gb(b: int | None) -> str:
    return "-" if not b else f"{b / 1e9:.2f}"  # no sample: a stage shorter than 50 ms


def report(results: list[dict]) -> None:
    for r in results:
        print(
            f"\n{r['customers']:,} customers x {r['days']} days, partition {r['day']}: "
            f"{r['rows']['purchases']:,} purchases, {r['rows']['labels']:,} labels, "
            f"{r['rows']['customers']:,} customers in the snapshot; "
            f"runs {', '.join(f'{s:.0f}' for s in r['cycle_runs_s'])} s"
        )
        print("| stage | wall s | rows/s | peak RSS GB | its table, GB |\n|---|--:|--:|--:|--:|")
        for step in r["steps"].values():
            rate = step["rows"] / step["s"] if step["s"] else 0
            print(
                f"| {step['label']} | {step['s']:.1f} | {rate:,.0f} {step['unit']}/s | "
                f"{_gb(step['peak_rss'])} | {_gb(step['written'])} |"
            )
            if step["label"].startswith("dbt"):
                for name, seconds in sorted(r.get("dbt_nodes", {}).items(), key=lambda x: -x[1]):
                    if seconds >= 0.5:
                        print(f"| &nbsp; {name} | {seconds:.1f} | | | |")
        print(
            f"| **cycle** (goal <= {GOALS['cycle_s'] / 60:.0f} min) | {r['cycle_s']:.1f} | "
            f"{r['rows']['customers'] / r['cycle_s']:,.0f} customers/s | "
            f"{_gb(r['peak_rss'])} (goal <= {GOALS['peak_rss_gb']:.0f}) | {_gb(r['disk'])} (all) |"
        )
        print(
            f"Redis: {_gb(r['redis_steady'])} GB one generation (goal <= "
            f"{GOALS['redis_steady_gb']} at 10M), {_gb(r['redis_switch'])} GB peak with two "
            f"(goal <= {GOALS['redis_switch_gb']}); redis-server RSS {_gb(r['redis_rss'])} GB"
        )
    if len(results) > 1:
        base = results[0]
        print(f"\nSide by side (seconds; x: against {base['customers']:,} customers per customer)")
        header = " | ".join(f"{r['customers']:,}" for r in results)
        print(f"| stage | {header} |\n|---|{'--:|' * len(results)}")
        for step, first in base["steps"].items():
            cells = []
            for r in results:
                s = r["steps"].get(step, {}).get("s", float("nan"))
                scale = (s / first["s"]) / (r["customers"] / base["customers"])
                cells.append(f"{s:.1f}" + ("" if r is base else f" ({scale:.2f}x)"))
            print(f"| {first['label']} | {' | '.join(cells)} |")
        cells = [f"{r['cycle_s']:.1f}" for r in results]
        print(f"| **cycle** | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--days", type=int, default=91, help="days of history, the cycle's last")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(
            os.environ.get("RISK_BENCH_CACHE", Path.home() / ".cache/risk-feature-store/scale")
        ),
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        folder = args.cache / f"{args.customers[0]}x{args.days}"
        if not (folder / "raw").exists():  # a generation cut short starts again
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        _use_world(folder, args.customers[0], args.cache)
        # Rolling up the whole history at once needs more than a day's run (3 GB spills out of
        # memory at 10M customers); the cycle itself runs with the project's setting.
        os.environ["RISK_DUCKDB_MEMORY_LIMIT"] = os.environ.get("RISK_BENCH_BUILD_MEMORY", "12GB")
        return build_world(folder, args.customers[0], args.days)
    if args.one:
        return one(args.customers[0], args.days, args.cache, args.repeats, args.out)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.customers:  # a process per N: its own settings, its own peak RSS
            out = Path(tmp) / f"{n}.json"
            subprocess.run(
                [
                    *(sys.executable, "-m", "benchmarks.scale", "--one", "--customers", str(n)),
                    *("--days", str(args.days), "--repeats", str(args.repeats)),
                    *("--cache", str(args.cache), "--out", str(out)),
                ],
                cwd=ROOT,
                check=True,
            )
            results.append(json.loads(out.read_text()))
            report(results[-1:])
            # Kept after each N: a larger N that fails leaves the smaller ones' figures.
            (args.cache / "last_report.json").write_text(json.dumps(results, indent=1))
    if len(results) > 1:
        report(results)


if __name__ == "__main__":
    main()
