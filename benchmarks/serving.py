"""Scoring service benchmark: `make bench-serving` (after `make demo`).

The production endpoint as deployed (`python -m serving`: API keys, Prometheus metrics and the
inference log on) and, as the ceiling, the same stack returning a constant
(`benchmarks/bare_app.py`), both on loopback, loaded by `benchmarks/load_generator.py` in a
separate process: open loop at rising rates (latency counted from when each request was due)
and closed loop (the most each does). Rounds alternate the two servers; medians of the rounds.
Then, in this process: per-stage time of a score (lookup, features, inference, total), CPU a
score in batches of 1, 4 and 16 (what a batch costs beside its requests), and LightGBM's
single-row fast path against `booster.predict` on the same rows (equal scores).

Requests are the demo's last two days of purchases, moved after the newest snapshot, so
customers, devices and amounts are realistic (~10% unknown to the snapshot).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.traffic import recent_requests
from resources import local_redis
from riskcore import settings

KEY = "bench-key-0123456789"


def start(args: list[str], env: dict, port: int) -> subprocess.Popen:
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{args} exited: {process.stderr.read().decode()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code in (200, 404):
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{args} did not start")


def load(
    port: int,
    bodies: str,
    seconds: float,
    rate: float = 0,
    connections: int = 32,
    path: str = "/score",
) -> dict:
    args = [
        sys.executable,
        "-m",
        "benchmarks.load_generator",
        "--port",
        str(port),
        "--bodies",
        bodies,
        "--header",
        f"X-API-Key: {KEY}",
        "--seconds",
        str(seconds),
        "--rate",
        str(rate),
        "--connections",
        str(connections),
        "--path",
        path,
    ]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict:
    keys = ("rps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors")
    return {k: statistics.median(r[k] for r in runs) for k in keys} | {
        "p99_range": (min(r["p99_ms"] for r in runs), max(r["p99_ms"] for r in runs))
    }


def in_process(bodies: list[dict], n: int = 4000) -> None:
    """Per-stage time of a score, CPU a score by batch size, and the fast path against
    booster.predict, in this process."""
    from serving.config import ServingConfig
    from serving.schemas import ScoreRequest
    from serving.scorer import Scorer, _model_and_input, _transaction, waited

    config = ServingConfig(
        api_keys=(KEY,),
        redis_url=local_redis.ensure_running(settings.load().embedded_redis_dir),
        tracking_uri=settings.load().tracking_uri(),
        hash_key=b"bench",
    )
    scorer = Scorer.open(config)
    requests = [ScoreRequest.model_validate(b) for b in bodies[:n]]
    for r in requests[:500]:
        scorer.score(r)
    stages: dict[str, list[float]] = {}
    for r in requests:
        for stage, ms in scorer.score(r).timing_ms.items():
            stages.setdefault(stage, []).append(ms * 1000)
    print(f"\nPer stage, in process ({n} scores; us): p50 / p95 / p99")
    for stage, us in stages.items():
        p50, p95, p99 = np.percentile(us, [50, 95, 99])
        print(f"  {stage:<13} {p50:7.1f} {p95:7.1f} {p99:7.1f}")
    # At a modest rate requests arrive one at a time, so a batch's fixed cost is paid by each.
    print("\nCPU a score by batch size, in process (process time: Redis' wait excluded; us):")
    for size in (1, 4, 16):  # above FAST_ROWS a batch predicts on several threads
        began = time.process_time()
        for i in range(0, n, size):
            scorer.score_many(requests[i : i + size])
        print(f"  batches of {size:<2}  {(time.process_time() - began) / n * 1e6:7.1f}")
    champion = scorer.models.champions["fraud"]
    version = champion.bundle.feature_set_version
    rows = []
    for r in requests[:2000]:
        lookups, realtime, entities = waited(scorer._read_store([r], scorer.models))
        found = {pair: f[0] for pair, f in entities.items()}
        rows.append(
            _model_and_input(
                champion, _transaction(r), lookups[version][0], realtime and realtime[0], found
            )
        )
    model = champion.bundle.behavioural
    vectors = [v for m, v in rows if m is model]
    fast_s, slow_s = [], []
    for _ in range(3):
        began = time.perf_counter()
        fast = [model.fast.predict(v) for v in vectors]
        fast_s.append(time.perf_counter() - began)
        began = time.perf_counter()
        slow = [model.booster.predict(v.reshape(1, -1))[0] for v in vectors]
        slow_s.append(time.perf_counter() - began)
    equal = fast == slow
    fast_us = statistics.median(fast_s) / len(vectors) * 1e6
    slow_us = statistics.median(slow_s) / len(vectors) * 1e6
    print(
        f"\nOne row, behavioural fraud model ({model.booster.num_trees()} trees, "
        f"{len(vectors)} rows, 3 rounds): fast path {fast_us:.1f} us, booster.predict "
        f"{slow_us:.1f} us: {fast_us / slow_us:.2f}x; scores equal: {equal}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", default="500,1000,1700,2500")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--overload",
        type=float,
        default=2.0,
        help="offered load in the overload phase, as a "
        "multiple of the production server's closed-loop rate (0: skip the phase)",
    )
    parser.add_argument(
        "--canary",
        type=float,
        default=0.0,
        help="run with a canary per target on this share of customers (a new version of each "
        "champion's artifacts; ended afterwards)",
    )
    args = parser.parse_args()
    with canary(args.canary):
        run(args)


@contextlib.contextmanager
def canary(share: float):
    """A canary per target during the benchmark: the champion's artifacts registered again as
    a new version, acting on ``share`` of customers (routing, a second model set and its fast
    predictors are what a canary costs serving); ended afterwards."""
    if not share:
        yield
        return
    from datetime import UTC, datetime

    from riskcore.registry import MODEL_NAMES, ModelRegistry

    registry = ModelRegistry.from_settings()
    for name in MODEL_NAMES.values():
        champion = registry.version(name)
        # The artifacts' location, not the champion's ``models:/`` source: MLflow resolves
        # that through its global tracking URI, which the project never sets.
        location = registry.client.get_model_version_download_uri(name, champion.version)
        copy = registry.client.create_model_version(name, location, champion.run_id)
        registry.start_canary(
            name, str(copy.version), share, datetime.now(UTC).isoformat(), "serving benchmark"
        )
        print(
            f"canary: {name}/{copy.version} on {share:.0%} of customers beside v{champion.version}"
        )
    try:
        yield
    finally:
        for name in MODEL_NAMES.values():
            registry.end_canary(name, "serving benchmark over", halted=False)


def run(args) -> None:
    rates = [float(r) for r in args.rates.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    bodies = recent_requests()
    bodies_file = folder / "bodies.json"
    bodies_file.write_text(json.dumps(bodies))
    ports = {"production": local_redis.free_port(), "bare": local_redis.free_port()}
    env = os.environ | {
        "RISK_API_KEYS": KEY,
        "RISK_SERVING_DEV": "0",
        "REDIS_URL": local_redis.ensure_running(settings.load().embedded_redis_dir),
        "RISK_INFERENCE_LOG_URI": os.environ.get("BENCH_LOG", str(folder / "inference_log")),
        "RISK_SERVING_PORT": str(ports["production"]),
        "PYTHONPATH": str(settings.PROJECT_ROOT),
    }
    servers = [
        start([sys.executable, "-m", "serving"], env, ports["production"]),
        start(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "benchmarks.bare_app:app",
                "--port",
                str(ports["bare"]),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--no-proxy-headers",
                "--no-server-header",
                "--timeout-keep-alive",
                "75",
            ],
            env,
            ports["bare"],
        ),
    ]
    try:
        for port in ports.values():
            load(port, str(bodies_file), 3)  # warm up
        results: dict = {}
        for _ in range(args.rounds):
            for rate in rates:
                for name, port in ports.items():
                    run = load(port, str(bodies_file), args.seconds, rate)
                    results.setdefault((name, rate), []).append(run)
            for name, port in ports.items():
                results.setdefault((name, 0), []).append(load(port, str(bodies_file), 6))
        overload = None
        if args.overload:
            capacity = statistics.median(r["rps"] for r in results[("production", 0)])
            overload = overloaded(ports["production"], str(bodies_file), capacity * args.overload)
    finally:
        for server in servers:
            server.terminate()  # the production server commits its log on the way out
            server.wait(timeout=60)
    logged = _logged_rows(folder / "inference_log")
    print(
        f"\nLoopback, generator in its own process, {args.rounds} rounds x {args.seconds:.0f} s "
        "(closed loop: 6 s, 32 connections); medians, p99 range over the rounds"
    )
    print(
        f"{'server':<11} {'offered':>9} {'achieved':>9} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'p99 range':>15} {'errors':>6}"
    )
    for (name, rate), runs in sorted(results.items(), key=lambda kv: (kv[0][1] or 1e9, kv[0][0])):
        m = median_of(runs)
        offered = f"{rate:.0f}/s" if rate else "closed"
        low, high = m["p99_range"]
        print(
            f"{name:<11} {offered:>9} {m['rps']:>9.0f} {m['p50_ms']:>7.2f} {m['p95_ms']:>7.2f} "
            f"{m['p99_ms']:>7.2f} {f'{low:.1f}-{high:.1f}':>15} {m['errors']:>6.0f}"
        )
    if overload:
        print(
            f"\nOverload: {overload['offered']:,.0f} req/s offered to production "
            f"({args.overload:g}x its closed loop), 10 s open loop: "
            f"{overload['rps']:,.0f} answers/s, p50 {overload['p50_ms']:.2f} ms, p99 "
            f"{overload['p99_ms']:.2f} ms (every answer, from when it was due); "
            f"{overload['shed_share']:.1%} refused at once (503, shed), "
            f"{overload['other_errors']:.0f} other errors; of the scores, "
            f"{overload['overload_share']:.1%} answered without a lookup past the queue budget "
            "(fallback_overload)"
        )
    print(f"\nInference log: {logged:,} rows written by the production server during the run")
    in_process(bodies)


def overloaded(port: int, bodies: str, rate: float) -> dict:
    """Open loop past capacity; the share of scores answered as ``fallback_overload``, from the
    service's own metrics before and after."""

    def sources() -> dict[str, float]:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"X-API-Key": KEY}).text
        out = {}
        for line in text.splitlines():
            if line.startswith("risk_feature_source_total{"):
                out[line.split('source="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
        return out

    before = sources()
    run = load(port, bodies, 10, rate, connections=256)
    after = sources()
    scored = {s: after.get(s, 0) - before.get(s, 0) for s in after}
    share = scored.get("fallback_overload", 0) / max(sum(scored.values()), 1)
    statuses = {int(k): v for k, v in run.get("error_statuses", {}).items()}
    shed = statuses.get(503, 0)
    return run | {
        "offered": rate,
        "overload_share": share,
        "shed_share": shed / max(run["answered"], 1),
        "other_errors": run["errors"] - shed,
    }


def _logged_rows(uri: Path) -> int:
    from deltalake import DeltaTable

    return DeltaTable(str(uri)).to_pyarrow_dataset().count_rows() if uri.exists() else 0


if __name__ == "__main__":
    main()
