"""Card-number detector cost on the scoring path: `python -m benchmarks.pan`.

Per request, the texts a `POST /score` body carries are scanned as the schema scans them
(riskcore/pan.py's ``find_pan`` on transaction_id, customer_id, merchant_id, device_id,
merchant_category; the card_hash is a well-formed keyed hash, so only its form is checked).
Requests are the documented example with fresh ids (uuid transaction ids, numeric customer
ids, hex device ids), timed one by one (perf_counter_ns; the timer's own cost, measured on
empty calls, is subtracted). Also the whole body validation (``ScoreRequest`` from JSON), for
scale. Prints p50/p99 in microseconds. Goal: scanning <= 20 us p99.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import numpy as np
import orjson

from riskcore.pan import find_pan, scanned
from serving.schemas import EXAMPLE, ScoreRequest

FIELDS = ("transaction_id", "customer_id", "merchant_id", "device_id", "merchant_category")


def requests(n: int, rng: np.random.Generator) -> list[dict]:
    return [
        EXAMPLE
        | {
            "transaction_id": str(uuid.UUID(bytes=rng.bytes(16), version=4)),
            "customer_id": f"c{int(rng.integers(10**9)):09d}",
            "merchant_id": f"m-{int(rng.integers(10**6))}",
            "device_id": f"{int(rng.integers(2**63)):016x}",
            "card_hash": f"{int(rng.integers(2**63)):016x}" * 4,
        }
        for i in range(n)
    ]


def scan(request: dict) -> bool:
    found = any(find_pan(request[f]) for f in FIELDS)
    return found or (scanned("card_hash", request["card_hash"]) and find_pan(request["card_hash"]))


def timed(fn, items: list) -> np.ndarray:
    clock = time.perf_counter_ns
    out = np.empty(len(items), dtype=np.int64)
    for i, item in enumerate(items):
        start = clock()
        fn(item)
        out[i] = clock() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    reqs = requests(args.requests, rng)
    # A random 16-hex device id is all decimal digits one time in ~2,000, and then Luhn-valid
    # one time in ten: a card number by the definition, refused; the rest is what is timed.
    refused = sum(scan(r) for r in reqs)
    reqs = [r for r in reqs if not scan(r)]
    bodies = [orjson.dumps(r) for r in reqs]
    rows = []
    for _ in range(args.rounds):
        overhead = float(np.median(timed(lambda _: None, reqs)))
        ns = timed(scan, reqs) - overhead
        full = timed(ScoreRequest.model_validate_json, bodies) - overhead
        rows.append([np.percentile(x, q) / 1000 for x in (ns, full) for q in (50, 99)])
    scan50, scan99, val50, val99 = (statistics.median(c) for c in zip(*rows, strict=True))
    print(f"requests {len(reqs)} x {args.rounds} rounds (medians of rounds); {refused} refused")
    print(f"scan a request's fields: p50 {scan50:.2f} us  p99 {scan99:.2f} us")
    print(f"validate the whole body: p50 {val50:.2f} us  p99 {val99:.2f} us (includes the scan)")


if __name__ == "__main__":
    main()
