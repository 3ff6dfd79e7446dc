"""`make chaos` (after `make demo`): the fault suite, against the service as deployed.

The scoring service runs as `make serve` runs it (its own process, API keys, the inference
log on), on the demo's online store, under a steady load of real purchases. Faults, one after
another:

* the embedded Redis killed with kill -9, then started again by the project's own path
  (``ensure_running``: the same address), stopped with SIGSTOP then resumed, and shut down
  cleanly then started again; recovery is the time from Redis answering again to the first
  answer scored ``online``;
* 10,000 malformed requests (broken JSON, wrong types, card numbers in every field, header
  bytes of any kind): no 5xx, and no card number in any answer;
* 10,000 landing rows, good and malformed interleaved (ragged rows, bad bytes, bad values,
  card numbers), ingested into a lakehouse of their own: every good row lands, every bad one is
  quarantined with its reason, and no stored byte holds a card number.

After the service stops, every 2xx answer must be in the inference log (lost good rows), and
the log, Redis and the quarantine are read back for card numbers (``demo/pan_scan.py``). Last, the
newest partition's daily run is killed -9 mid-run and run again: the previous rows serve
meanwhile, and the re-run gives the same raw rows and snapshot. Not simulated: a full disk
(it needs a mount this process cannot make).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import redis

from assets.features.online import newest_as_of_date
from assets.ingest.raw import ingest_day
from assets.ingest.sources import RawSources
from benchmarks.traffic import recent_requests
from demo.pan_scan import SEEDED, redis_card_numbers, stored_card_numbers
from resources import local_redis
from resources.lakehouse import CUSTOMER_FEATURES, QUARANTINE, TRANSACTIONS, Lakehouse
from riskcore import settings
from riskcore.pan import find_pan

KEY = "chaos-key-0123456789"
AUTH = {"X-API-Key": KEY}


@dataclass
class Outcome:
    fault: str
    requests: int = 0
    server_errors: int = 0
    lost_good_rows: int = 0
    pan_hits: int = 0
    recovery_s: float | None = None
    note: str = ""
    broken: bool = False  # a promise not kept that the counts do not show


@dataclass
class Load:
    """Scores sent back to back from a thread; each answer's time, status and feature source."""

    port: int
    bodies: list[dict]
    answers: list[tuple[float, int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5) as client:
            k = 0
            while not self.stop.is_set():
                body = self.bodies[k % len(self.bodies)] | {"transaction_id": f"chaos-{k}"}
                k += 1
                try:
                    response = client.post("/score", json=body, headers=AUTH)
                    source = (
                        response.json().get("feature_source", "") if response.is_success else ""
                    )
                    self.answers.append((time.monotonic(), response.status_code, source))
                except httpx.HTTPError:
                    self.answers.append((time.monotonic(), 599, ""))
                time.sleep(0.002)

    def online_after(self, moment: float, timeout_s: float = 30) -> float | None:
        """Seconds from ``moment`` to the first answer scored online (None: not within)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for at, status, source in list(self.answers):
                if at >= moment and status == 200 and source == "online":
                    return at - moment
            time.sleep(0.02)
        return None

    def since(self, moment: float) -> list[tuple[float, int, str]]:
        return [a for a in self.answers if a[0] >= moment]


def start_service(port: int, redis_url: str, log_uri: str) -> subprocess.Popen:
    env = os.environ | {
        "RISK_API_KEYS": KEY,
        "RISK_SERVING_DEV": "0",
        "REDIS_URL": redis_url,
        "RISK_INFERENCE_LOG_URI": log_uri,
        "RISK_SERVING_PORT": str(port),
        "PYTHONPATH": str(settings.PROJECT_ROOT),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "serving"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the service exited: {process.stderr.read().decode()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the service did not become ready")


def redis_faults(load: Load, folder: Path) -> list[Outcome]:
    """Kill -9 and restart, SIGSTOP and SIGCONT, clean restart: recovery of ``online``."""
    outcomes = []

    def pid() -> int:
        return json.loads((folder / "server.json").read_text())["pid"]

    def measured(name: str, began: float, answering: float) -> Outcome:
        recovery = load.online_after(answering)
        time.sleep(0.5)
        answers = load.since(began)
        return Outcome(
            name,
            requests=len(answers),
            server_errors=sum(500 <= s < 599 for _, s, _ in answers),
            recovery_s=recovery,
            note="" if recovery is not None else "never back online",
        )

    time.sleep(1)
    began = time.monotonic()
    os.kill(pid(), signal.SIGKILL)
    time.sleep(1)  # a second of fallback
    local_redis.ensure_running(folder)
    outcomes.append(measured("Redis kill -9, restarted by ensure_running", began, time.monotonic()))

    began = time.monotonic()
    os.kill(pid(), signal.SIGSTOP)
    time.sleep(2)
    os.kill(pid(), signal.SIGCONT)
    outcomes.append(measured("Redis SIGSTOP 2 s, SIGCONT", began, time.monotonic()))

    began = time.monotonic()
    local_redis.stop(folder)
    time.sleep(1)
    local_redis.ensure_running(folder)
    outcomes.append(measured("Redis shut down, started again", began, time.monotonic()))
    return outcomes


def malformed_bodies(
    n: int, good: list[dict], key: str = KEY, seed: int = 7
) -> list[tuple[dict, bytes]]:
    """(headers, body) pairs a careless or hostile caller sends (``key``: the valid API key)."""
    rng = random.Random(seed)
    junk_values = [None, "", "x" * 5000, -1, 1e308, float("nan"), [], {}, True, "\x00", "é" * 40]
    fields = list(good[0])
    out = []
    for k in range(n):
        body = dict(rng.choice(good))
        kind = k % 6
        if kind == 0:
            raw = json.dumps(body).encode()[: rng.randrange(1, 200)]  # cut short
        elif kind == 1:
            body[rng.choice(fields)] = rng.choice(junk_values)
            raw = json.dumps(body, allow_nan=True).encode()
        elif kind == 2:
            body[rng.choice([*fields, "note"])] = rng.choice(SEEDED)
            raw = json.dumps(body).encode()
        elif kind == 3:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        elif kind == 4:
            body.pop(rng.choice(fields), None)
            raw = json.dumps(body).encode()
        else:
            raw = json.dumps([body] * rng.randrange(0, 3)).encode()
        headers = {"X-API-Key": key}
        if k % 50 == 0:
            headers = {"X-API-Key": bytes(rng.randrange(128, 256) for _ in range(8))}
        out.append((headers, raw))
    return out


def malformed_requests(port: int, n: int, good: list[dict]) -> Outcome:
    statuses: Counter = Counter()
    hits = 0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for k, (headers, raw) in enumerate(malformed_bodies(n, good)):
            path = ("/score", "/score/batch", "/events")[k % 3]
            response = client.post(
                path, content=raw, headers=headers | {"content-type": "application/json"}
            )
            statuses[response.status_code] += 1
            hits += bool(find_pan(response.text))
    return Outcome(
        f"{n:,} malformed requests",
        requests=n,
        server_errors=sum(c for s, c in statuses.items() if s >= 500),
        pan_hits=hits,
        note=" ".join(f"{s}: {c}" for s, c in sorted(statuses.items())),
    )


def malformed_landing(n: int, folder: Path, seed: int = 11) -> Outcome:
    """``n`` landing rows, every third malformed, into a lakehouse of their own."""
    day = date(2026, 2, 10)
    rng = random.Random(seed)
    header = (
        "transaction_id,customer_id,event_ts,amount,currency,merchant_id,merchant_category,"
        "channel,device_id,country,installments,card_hash"
    )
    good_lines, lines = 0, [header]
    for k in range(n):
        row = [
            f"chaos-{k}",
            f"c{k % 97}",
            f"{day}T10:{k % 60:02d}:00Z",
            f"{1 + k % 500}.50",
            "EUR",
            f"m{k % 13}",
            "grocery",
            "pos",
            "",
            "NA",
            "1",
            "ab" * 32,
        ]
        kind = k % 3 and rng.randrange(6)
        if kind == 0:
            good_lines += 1
        elif kind == 1:
            row = row[: rng.randrange(1, 11)]  # ragged
        elif kind == 2:
            row[rng.choice([0, 1, 5, 8])] = rng.choice(SEEDED).replace(",", " ")
        elif kind == 3:
            row[3] = rng.choice(["-1", "abc", "1.005", "0"])
        elif kind == 4:
            row[7] = rng.choice(["fax", "", "PO S"])
        else:
            row[2] = rng.choice(["yesterday", "2026-02-11T00:00:00Z", ""])
        lines.append(",".join(row))
    landing = folder / "landing" / "transactions" / day.isoformat()
    landing.mkdir(parents=True)
    raw = "\n".join(lines).encode() + b"\n" + b"bad-bytes,\xff\xfe\n"
    (landing / "chaos.csv").write_bytes(raw)
    lakehouse = Lakehouse(root_uri=str(folder / "lakehouse"))
    sources = RawSources(synthetic=False, landing_dir=str(folder / "landing"))
    report = ingest_day("transactions", day, sources, lakehouse)
    landed = lakehouse.dataset(TRANSACTIONS).count_rows()
    quarantined = lakehouse.dataset(QUARANTINE).count_rows()
    hits = len(stored_card_numbers(folder / "lakehouse"))
    return Outcome(
        f"{n:,} landing rows, {n - good_lines:,} malformed",
        requests=n + 1,
        lost_good_rows=good_lines - landed,
        pan_hits=hits,
        note=f"landed {landed:,}, quarantined {quarantined:,} (reported {report.quarantined:,})",
    )


RERUN = """
import sys
from datetime import date, timedelta
from demo.run import dagster_instance, run_partition_range
day = date.fromisoformat(sys.argv[1])
raise SystemExit(0 if run_partition_range(day, day, dagster_instance()).success else 1)
"""


def killed_run(after_s: float = 12.0) -> Outcome:
    """The newest partition's run killed (-9, the whole process group: dbt too) after
    ``after_s``, then run again: its raw rows and its snapshot must equal what they were."""
    lakehouse = Lakehouse()
    day = newest_as_of_date(lakehouse) - timedelta(days=1)  # the snapshot at day + 1 00:00

    def state() -> tuple[pa.Table, pa.Table]:
        raw = lakehouse.dataset(TRANSACTIONS).to_table(filter=pc.field("event_date") == day)
        snapshot = lakehouse.dataset(CUSTOMER_FEATURES).to_table(
            filter=pc.field("as_of_date") == day + timedelta(days=1)
        )
        return raw.sort_by("transaction_id"), snapshot.sort_by("customer_id")

    before = state()
    args = [sys.executable, "-c", RERUN, day.isoformat()]
    env = os.environ | {"PYTHONPATH": str(settings.PROJECT_ROOT)}
    run = subprocess.Popen(args, env=env, start_new_session=True, stderr=subprocess.DEVNULL)
    time.sleep(after_s)
    killed = run.poll() is None
    if killed:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    between = state()
    again = subprocess.run(args, env=env, stderr=subprocess.PIPE, text=True)
    after = state()
    lost = len(
        set(before[0]["transaction_id"].to_pylist()) - set(after[0]["transaction_id"].to_pylist())
    )
    lost += len(
        set(before[1]["customer_id"].to_pylist()) - set(after[1]["customer_id"].to_pylist())
    )
    equal = all(b.equals(a) for b, a in zip(before, after, strict=True))
    kept = all(b.equals(m) for b, m in zip(before, between, strict=True))
    return Outcome(
        f"daily run of {day} killed -9 after {after_s:.0f} s, run again",
        requests=1,
        lost_good_rows=lost,
        broken=not (equal and kept and again.returncode == 0),
        note=(
            f"killed mid-run: {killed}; previous rows kept meanwhile: {kept}; re-run "
            + ("equal" if equal else "DIFFERENT")
            + ("" if again.returncode == 0 else f"; re-run failed: {again.stderr[-300:]}")
        ),
    )


def logged_rows(uri: str) -> set[str]:
    from deltalake import DeltaTable

    if not Path(uri).exists():
        return set()
    return set(
        DeltaTable(uri).to_pyarrow_table(columns=["transaction_id"])["transaction_id"].to_pylist()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--malformed", type=int, default=10_000)
    parser.add_argument("--landing-rows", type=int, default=10_000)
    args = parser.parse_args()
    env = settings.load()
    folder = env.embedded_redis_dir
    redis_url = local_redis.ensure_running(folder)
    work = Path(tempfile.mkdtemp(prefix="chaos-"))
    log_uri = str(work / "inference_log")
    port = local_redis.free_port()
    bodies = recent_requests(2000)
    service = start_service(port, redis_url, log_uri)
    load = Load(port, bodies)
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    try:
        outcomes = redis_faults(load, folder)
        outcomes.append(malformed_requests(port, args.malformed, bodies))
    finally:
        load.stop.set()
        thread.join()
        service.send_signal(signal.SIGTERM)  # the log is committed on the way out
        service.wait(timeout=60)
    answered = {f"chaos-{k}" for k, (_, status, _) in enumerate(load.answers) if status == 200}
    logged = logged_rows(log_uri)
    pan_in_stores = len(stored_card_numbers(work)) + len(
        redis_card_numbers(redis.Redis.from_url(local_redis.ensure_running(folder)))
    )
    outcomes.append(
        Outcome(
            "inference log and online store after the service stopped",
            requests=len(load.answers),
            server_errors=sum(500 <= s < 600 for _, s, _ in load.answers),
            lost_good_rows=len(answered - logged),
            pan_hits=pan_in_stores,
            note=f"{len(answered):,} answered 200, {len(answered & logged):,} of them logged",
        )
    )
    outcomes.append(malformed_landing(args.landing_rows, work))
    outcomes.append(killed_run())
    print(table(outcomes))
    failed = [
        o.fault
        for o in outcomes
        if o.server_errors
        or o.broken
        or o.lost_good_rows
        or o.pan_hits
        or (o.recovery_s is not None and o.recovery_s > 2)
        or o.note == "never back online"
    ]
    if failed:
        raise SystemExit("chaos found trouble: " + "; ".join(failed))
    print("0 5xx, 0 lost good rows, 0 card numbers, every recovery within 2 s")


def table(outcomes: list[Outcome]) -> str:
    lines = [
        f"{'fault':<58} {'requests':>9} {'5xx':>5} {'lost':>5} {'PAN':>4} {'recovery':>9}  note",
    ]
    for o in outcomes:
        recovery = "-" if o.recovery_s is None else f"{o.recovery_s:.2f} s"
        lines.append(
            f"{o.fault:<58} {o.requests:>9,} {o.server_errors:>5} {o.lost_good_rows:>5} "
            f"{o.pan_hits:>4} {recovery:>9}  {o.note}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
