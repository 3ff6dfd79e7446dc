"""Real-time features benchmark: `make bench-realtime` (after `make demo`: the service loads
the demo's champions).

Ingest: events/s into the real-time state through the production service (`python -m
serving`, API key, metrics) with single-event `POST /events` and batches of 500 (closed loop,
`benchmarks/load_generator.py` in its own process), and through the Redis Stream consumer
(`python -m serving.event_stream`, its own process) draining 100,000 queued events.
Freshness: event -> visible latency under a background load of 5,000 events/s: a probe event
for a fresh customer is sent (XADD, or `POST /events`) and the state is read as `/score` reads
it (`RealtimeStore.read`, every 0.2 ms) until the event counts; latency from the send to the
first read that sees it. Rounds: 3; medians, p50/p95/p99 over all probes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

from benchmarks.serving import KEY, load, start
from resources import local_redis
from riskcore import settings
from riskcore.online_store import connect
from riskcore.realtime import RealtimeStore
from serving.event_stream import publish

BATCH = 500


def events(n: int, customers: int = 20_000, seed: int = 0) -> list[dict]:
    """Unique purchases of the last half hour (so none is in the future or late)."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:8]
    return [
        {
            "transaction_id": f"b{run}-{seed}-{i}",
            "customer_id": f"rt-c{c}",
            "event_ts": (now - timedelta(seconds=float(s))).isoformat(),
            "amount": f"{a:.2f}",
            "merchant_id": f"m{m}",
            "device_id": f"d{c}-{m % 3}",
        }
        for i, (c, s, a, m) in enumerate(
            zip(
                rng.integers(0, customers, n),
                rng.uniform(0, 1800, n),
                rng.lognormal(3, 1, n),
                rng.integers(0, 500, n),
                strict=True,
            )
        )
    ]


def percentiles(ms: list[float]) -> str:
    p = np.percentile(ms, [50, 95, 99])
    return f"p50 {p[0]:.2f} / p95 {p[1]:.2f} / p99 {p[2]:.2f} ms (n={len(ms)})"


def probe_latency(send, store: RealtimeStore, seconds: float, every_s: float = 0.02) -> list:
    """Probe events for fresh customers, each sent by ``send(event)``; ms until readable (a
    probe not visible within 5 s counts as 5,000 ms: it shows in the tail, never vanishes)."""
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        customer = f"probe-{uuid.uuid4().hex}"
        at = datetime.now(UTC)
        event = {
            "transaction_id": f"p-{customer}",
            "customer_id": customer,
            "event_ts": at.isoformat(),
            "amount": "1.00",
            "merchant_id": "m",
        }
        began = time.perf_counter()
        send(event)
        while store.read([(customer, at + timedelta(microseconds=1), "q", None)])[0][1] < 1:
            if time.perf_counter() - began > 5:
                print(f"probe {customer} not visible after 5 s", flush=True)
                break
            time.sleep(0.0002)
        out.append(min(time.perf_counter() - began, 5.0) * 1e3)
        time.sleep(every_s)
    return out


def background(kind: str, target: str, rate: float, seed: int, stop) -> None:
    """``rate`` events/s in batches every 10 ms, to a stream (``target`` its name) or to
    ``POST /events`` (``target`` the port); in its own process, so the probe's timing does not
    wait for this one's GIL."""
    if kind == "stream":
        client = connect(local_redis.ensure_running(settings.load().embedded_redis_dir))

        def send(batch):
            publish(client, batch, target)
    else:
        http = httpx.Client(base_url=f"http://127.0.0.1:{target}", headers={"X-API-Key": KEY})

        def send(batch):
            http.post("/events", json={"events": batch})

    per_tick = max(1, int(rate / 100))
    pool = events(int(rate * 40), seed=seed)
    next_at, i = time.monotonic(), 0
    while not stop.is_set():
        send(pool[i : i + per_tick])
        i = (i + per_tick) % (len(pool) - per_tick)
        next_at += 0.01
        time.sleep(max(0.0, next_at - time.monotonic()))


def under_load(
    send_one, store, kind: str, target: str, rate: float, seconds: float, seed: int
) -> list:
    """Probe latencies while another process sends ``rate`` events/s the same way."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    loader = context.Process(target=background, args=(kind, target, rate, seed, stop))
    loader.start()
    try:
        time.sleep(2.0)  # the loader's start-up
        return probe_latency(send_one, store, seconds)
    finally:
        stop.set()
        loader.join()


def http_round(port: int, folder: Path, seconds: float, seed: int) -> dict:
    single = folder / f"single{seed}.json"
    single.write_text(json.dumps(events(60_000, seed=seed)))
    pool = events(BATCH * 400, seed=seed + 1)
    batches = folder / f"batches{seed}.json"
    batches.write_text(
        json.dumps([{"events": pool[i : i + BATCH]} for i in range(0, len(pool), BATCH)])
    )
    one = load(port, str(single), seconds, connections=16, path="/events")
    many = load(port, str(batches), seconds, connections=4, path="/events")
    return {
        "http_single": one["rps"],
        "http_batch": many["rps"] * BATCH,
        "http_batch_p99": many["p99_ms"],
    }


def stream_round(client, store, env: dict, rate: float, seconds: float, seed: int) -> tuple:
    """The consumer draining 100,000 queued events (events/s, its start-up included), then
    probe latencies through the stream under ``rate`` events/s."""
    stream = f"bench:events:{uuid.uuid4().hex[:8]}"
    queued = events(100_000, seed=seed)
    for i in range(0, len(queued), 5000):
        publish(client, queued[i : i + 5000], stream)
    began = time.perf_counter()
    consumer = subprocess.Popen(
        [sys.executable, "-m", "serving.event_stream"],
        env=env | {"RISK_EVENTS_STREAM": stream},
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            groups = client.xinfo_groups(stream)
            if groups and groups[0]["entries-read"] == len(queued) and not groups[0]["pending"]:
                break
            time.sleep(0.01)
        drained = len(queued) / (time.perf_counter() - began)
        latencies = under_load(
            lambda e: publish(client, [e], stream), store, "stream", stream, rate, seconds, seed
        )
        return drained, latencies
    finally:
        consumer.terminate()
        consumer.wait()
        client.delete(stream, f"{stream}:dead")


def http_freshness(port: int, store, rate: float, seconds: float, seed: int) -> list:
    base = {"base_url": f"http://127.0.0.1:{port}", "headers": {"X-API-Key": KEY}}
    with httpx.Client(**base) as probe:
        return under_load(
            lambda e: probe.post("/events", json=e).raise_for_status(),
            store,
            "http",
            str(port),
            rate,
            seconds,
            seed,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", type=float, default=5000, help="background events/s")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-realtime-"))
    url = local_redis.ensure_running(settings.load().embedded_redis_dir)
    client = connect(url)
    store = RealtimeStore(client)
    port = local_redis.free_port()
    env = os.environ | {
        "RISK_API_KEYS": KEY,
        "RISK_SERVING_DEV": "0",
        "REDIS_URL": url,
        "RISK_INFERENCE_LOG_URI": "",
        "RISK_SERVING_PORT": str(port),
        "PYTHONPATH": str(settings.PROJECT_ROOT),
    }
    server = start([sys.executable, "-m", "serving"], env, port)
    rounds: list[dict] = []
    stream_ms: list[float] = []
    http_ms: list[float] = []
    try:
        for r in range(args.rounds):
            found = http_round(port, folder, args.seconds, seed=10 * r)
            found["stream"], latencies = stream_round(
                client, store, env, args.load, args.seconds, seed=10 * r + 3
            )
            stream_ms += latencies
            http_ms += http_freshness(port, store, args.load, args.seconds, seed=10 * r + 5)
            rounds.append(found)
            print(f"round {r + 1}: {found}", flush=True)
    finally:
        server.terminate()
        server.wait()
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(f"\nIngest (events/s, median of {args.rounds} rounds):")
    print(f"  POST /events, one event a request (16 connections): {med['http_single']:,.0f}")
    print(
        f"  POST /events, {BATCH} a request (4 connections): {med['http_batch']:,.0f} "
        f"(request p99 {med['http_batch_p99']:.1f} ms)"
    )
    print(f"  Redis Stream consumer (one process, start-up included): {med['stream']:,.0f}")
    print(
        f"\nEvent -> visible to /score's read, under {args.load:,.0f} events/s of background load:"
    )
    print(f"  via the stream: {percentiles(stream_ms)}")
    print(f"  via POST /events: {percentiles(http_ms)}")


if __name__ == "__main__":
    main()
