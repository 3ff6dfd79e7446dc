"""The duplicate-id check at scale: `python -m benchmarks.duplicate_check`.

A day's purchases (``--rows``, 1% of their ids already stored) are validated against the
transaction ids stored in the window of days around it (``--days`` x ``--ids-per-day``: 30 x 2M
is the window of a 10M-customer world), as ingest does (``validate_transactions``). Two ways
to hand the window over, each in its own process (peak RSS is the process's): **streamed**, as
ingest does (``stored_ids``: pyarrow's scanner keeps only the stored ids among the day's), and
**in memory**, the window read into one Arrow table first, as ingest did before. Prints wall
time, peak RSS and the rows quarantined (equal for both). The stored table, a real Delta
table, is built once into ``--cache``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa

from assets.ingest.contract import TRANSACTIONS_PARTITION
from resources.lakehouse import TRANSACTIONS, Lakehouse

DAY = date(2026, 3, 1)


def _lake(args) -> Lakehouse:
    folder = Path(args.cache).expanduser() / f"{args.days}x{args.ids_per_day}"
    lake = Lakehouse(root_uri=str(folder))
    if not (folder / "_built").exists():
        for d in range(1, args.days + 1):
            ids = pa.array([f"tx_{d:03d}_{i:012d}" for i in range(args.ids_per_day)])
            data = pa.table({"transaction_id": ids})
            lake.replace_day(TRANSACTIONS, data, TRANSACTIONS_PARTITION, DAY - timedelta(days=d))
            print(f"built day {d}/{args.days}", file=sys.stderr)
        (folder / "_built").touch()
    return lake


def _rows(n: int) -> pa.Table:
    """n purchases of the generator, with fresh ids but every hundredth one already stored."""
    from assets.ingest.synthetic import GeneratorConfig, generate_transactions

    day = generate_transactions(GeneratorConfig(seed=1, customers=200_000), DAY)
    rows = pa.concat_tables([day] * (n // day.num_rows + 1)).slice(0, n)
    ids = [
        f"tx_{1 + i % 30:03d}_{i:012d}" if i % 100 == 0 else f"tx_new_{i:012d}" for i in range(n)
    ]
    return rows.set_column(
        rows.schema.get_field_index("transaction_id"), "transaction_id", pa.array(ids)
    )


def measure(args) -> dict:
    from assets.ingest.validate import stored_ids, validate_transactions

    lake, rows = _lake(args), _rows(args.rows)
    began = time.perf_counter()
    window = lake.near_day(TRANSACTIONS, TRANSACTIONS_PARTITION, DAY, args.days)
    if args.variant == "in-memory":
        known = window.to_table(columns=["transaction_id"])
    else:
        known = stored_ids(window, [rows])
    checked = validate_transactions(rows, DAY, "bench", known=[known])
    return {
        "seconds": time.perf_counter() - began,
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "quarantined": checked.quarantined.num_rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--ids-per-day", type=int, default=2_000_000)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--cache", default="~/.cache/risk-feature-store/duplicate_check")
    parser.add_argument("--variant", choices=["streamed", "in-memory"])
    args = parser.parse_args()
    if args.variant:  # one measurement, in this process
        print(json.dumps(measure(args)))
        return
    _lake(args)
    print(
        f"{args.rows:,} purchases against {args.days} stored days x {args.ids_per_day:,} ids, "
        "each way in its own process"
    )
    for variant in ("streamed", "in-memory"):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.duplicate_check",
                *sys.argv[1:],
                "--variant",
                variant,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        print(
            f"  {variant:<10} {result['seconds']:6.1f} s  peak RSS {result['peak_gb']:5.2f} GB  "
            f"quarantined {result['quarantined']:,}"
        )


if __name__ == "__main__":
    main()
