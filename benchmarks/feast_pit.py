"""Feast ``get_historical_features`` (duckdb offline store) on our snapshot layout.

A comparison point for ``benchmarks/sdk.py``: the same point-in-time question
(entity rows at ``event_ts`` against daily snapshots usable from
``as_of + lag``) asked of Feast instead of our store. This script is standalone
and imports nothing from the project: only feast, pandas, pyarrow and the
standard library, and it is run with a SEPARATE virtualenv's python, because
Feast's pins clash with the project's own environment.

Creating that virtualenv: two plain commands, no shell features, so a Makefile
can run them as they are (``uv`` is ``.tools/bin/uv`` in the main checkout)::

    uv venv /work/.feastvenv --python 3.11
    uv pip install --python /work/.feastvenv/bin/python -r benchmarks/feast_requirements.txt

or, without uv::

    python3.11 -m venv /work/.feastvenv
    /work/.feastvenv/bin/pip install -r benchmarks/feast_requirements.txt

Running it::

    /work/.feastvenv/bin/python benchmarks/feast_pit.py \\
        --snapshots DIR --entities FILE.parquet --features f0,f1,f2 --lag-hours 6

* ``DIR`` is Hive-partitioned Parquet, ``DIR/as_of_date=YYYY-MM-DD/*.parquet``
  with ``customer_id`` (string), ``as_of`` (timestamp[us, UTC], midnight of the
  partition's date) and float32 features ``f0..fN``.
* ``FILE.parquet`` holds the entity rows: ``customer_id`` (string) and
  ``event_ts`` (timestamp[us, UTC]).

The last line of stdout is one JSON object::

    {"feast_version", "rows", "seconds", "rows_per_s", "peak_rss_mb",
     "prep_seconds", "ttl_hours", ...}

``seconds`` times only ``store.get_historical_features(entity_df=...,
features=[...]).to_arrow()``; building the repo, ``apply``, opening ibis's
in-process DuckDB connection (about 0.5 s on first use) and reading the entity
file into pandas are outside it. ``--repeat N`` runs the query N times in the
same process: ``seconds`` is then the fastest and ``seconds_all`` lists all.
``non_null_rows`` counts result rows whose first feature is not null, for a
rough cross-check against our own null count (see the semantics below).
``--output FILE`` also writes Feast's result (after timing).

How the lag is expressed. A Feast FileSource takes its event timestamp from a
stored column; it has no computed columns (``field_mapping`` only renames).
Two ways are offered (``--lag-mode``):

* ``copy`` (default): a prepared copy of the snapshots is written once, in a
  child process, with an added column ``available_ts = as_of + lag`` (same
  Hive layout, only ``customer_id``, ``as_of``, ``available_ts`` and the
  requested features). The FileSource's ``timestamp_field`` is
  ``available_ts``. Its cost is ``prep_seconds`` and it is NOT in
  ``seconds``. ``--prep-dir`` keeps the copy and reuses it on the next run
  with the same snapshots, lag and features (``prep_reused`` then is true).
* ``entity-shift``: the FileSource reads the original snapshots with
  ``timestamp_field = as_of`` and the entity rows are asked at
  ``event_ts - lag`` instead (``as_of + lag <= t`` iff ``as_of <= t - lag``).
  Same rows selected, no copy; the returned ``event_timestamp`` column is the
  shifted one.

Semantics that differ from ours (ours: a row at t gets the partition with the
greatest ``as_of + lag <= t``; a customer absent from that partition gets
nulls, never an older row). Feast takes, per entity row, the latest feature
row of THAT CUSTOMER with ``ts <= t`` and ``ts >= t - ttl`` (``--ttl-hours``,
48 by default). So a customer missing from the newest usable partition gets
its value from an older partition within the TTL (ours: null), and a row
whose newest usable partition is older than the TTL gets nulls (ours: the
value, whatever its age). With a TTL just under the partition spacing
(``--ttl-hours 23.99999972`` for daily partitions) Feast falls back to no older
partition, and on contiguous daily data it then returned exactly our values on
every row whose newest usable partition is under 24 h old (checked on
generated data); rows further past their newest partition are null in Feast.
With the default 48 h, values differ on rows whose customer is absent from the
newest usable partition; ``rows`` always equals the entity row count.

``peak_rss_mb`` is ``ru_maxrss`` of this process plus that of its children,
but children that ran before the timed query (the ``copy`` preparation) are
left out and reported as ``prep_peak_rss_mb`` instead: the query runs in this
process (DuckDB in-process through ibis), so the query's peak is this
process's peak. That peak includes Feast's imports and the entity frame;
``rss_before_query_mb`` is the peak just before the first timed query, so the
difference is what the query itself added.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

PREP_MARKER = "_feast_pit_prep.json"
TS_COLUMN = "available_ts"


def _log(msg: str) -> None:
    print(f"[feast_pit] {msg}", file=sys.stderr, flush=True)


def _snapshot_files(snapshots: str) -> list[str]:
    files = sorted(glob.glob(os.path.join(snapshots, "as_of_date=*", "*.parquet")))
    if not files:
        raise SystemExit(f"no Parquet files under {snapshots}/as_of_date=*/")
    return files


def _prep_key(snapshots: str, lag_hours: float, features: list[str]) -> dict:
    files = _snapshot_files(snapshots)
    return {
        "snapshots": os.path.abspath(snapshots),
        "lag_hours": lag_hours,
        "features": features,
        "files": [
            [os.path.relpath(f, snapshots), os.path.getsize(f), int(os.path.getmtime(f))]
            for f in files
        ],
    }


def prepare_copy(snapshots: str, prep_dir: str, lag_hours: float, features: list[str]) -> None:
    """Write the snapshots again with ``available_ts = as_of + lag``.

    One source file at a time, one row group at a time: memory stays at one
    row group whatever the number of partitions.
    """
    key = _prep_key(snapshots, lag_hours, features)
    if os.path.exists(prep_dir):
        shutil.rmtree(prep_dir)
    os.makedirs(prep_dir)
    lag = pa.scalar(int(lag_hours * 3600 * 1_000_000), pa.duration("us"))
    columns = ["customer_id", "as_of", *features]
    for rel, _size, _mtime in key["files"]:
        src = pq.ParquetFile(os.path.join(snapshots, rel))
        dst = os.path.join(prep_dir, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        writer = None
        for i in range(src.num_row_groups):
            t = src.read_row_group(i, columns=columns)
            as_of = t.column("as_of").cast(pa.timestamp("us", tz="UTC"))
            t = t.set_column(t.schema.get_field_index("as_of"), "as_of", as_of)
            t = t.append_column(TS_COLUMN, pc.add(as_of, lag))
            if writer is None:
                writer = pq.ParquetWriter(dst, t.schema)
            writer.write_table(t)
        if writer is not None:
            writer.close()
    with open(os.path.join(prep_dir, PREP_MARKER), "w") as fh:
        json.dump(key, fh)


def _prep_is_current(snapshots: str, prep_dir: str, lag_hours: float, features: list[str]) -> bool:
    marker = os.path.join(prep_dir, PREP_MARKER)
    if not os.path.exists(marker):
        return False
    with open(marker) as fh:
        return json.load(fh) == _prep_key(snapshots, lag_hours, features)


def _maxrss_mb(who) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--snapshots", required=True, help="Hive-partitioned snapshot dir")
    ap.add_argument("--entities", required=True, help="Parquet of customer_id, event_ts")
    ap.add_argument("--features", required=True, help="comma-separated, e.g. f0,f1,f2")
    ap.add_argument("--lag-hours", type=float, required=True)
    ap.add_argument(
        "--ttl-hours",
        type=float,
        default=48.0,
        help="FeatureView TTL (default 48; 0 = no TTL, Feast then looks "
        "back without limit); Feast's TTL rule is not ours",
    )
    ap.add_argument("--lag-mode", choices=("copy", "entity-shift"), default="copy")
    ap.add_argument(
        "--prep-dir",
        default=None,
        help="keep the prepared copy here and reuse it when current "
        "(default: a temp dir removed at exit)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="DuckDB threads (default: DuckDB's own, i.e. all cores)",
    )
    ap.add_argument("--memory-limit", default=None, help="DuckDB memory_limit, e.g. 16GB")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the query N times; seconds is the fastest, seconds_all all",
    )
    ap.add_argument(
        "--output",
        default=None,
        help="also write Feast's result to this Parquet file (after timing)",
    )
    ap.add_argument("--_prepare-only", dest="prepare_only", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    features = [f.strip() for f in args.features.split(",") if f.strip()]
    snapshots = os.path.abspath(args.snapshots)

    if args.prepare_only:
        prepare_copy(snapshots, args.prepare_only, args.lag_hours, features)
        return 0

    work = tempfile.mkdtemp(prefix="feast_pit_")
    try:
        return _run(args, features, snapshots, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args, features: list[str], snapshots: str, work: str) -> int:
    # --- preparation (not timed) -------------------------------------------
    prep_seconds = 0.0
    prep_reused = False
    prep_peak_rss_mb = 0.0
    if args.lag_mode == "copy":
        prep_dir = (
            os.path.abspath(args.prep_dir) if args.prep_dir else os.path.join(work, "prepared")
        )
        if _prep_is_current(snapshots, prep_dir, args.lag_hours, features):
            prep_reused = True
            _log(f"reusing prepared copy {prep_dir}")
        else:
            _log(
                f"writing prepared copy with {TS_COLUMN} = as_of + {args.lag_hours}h to {prep_dir}"
            )
            t0 = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--snapshots",
                    snapshots,
                    "--entities",
                    args.entities,
                    "--features",
                    ",".join(features),
                    "--lag-hours",
                    str(args.lag_hours),
                    "--_prepare-only",
                    prep_dir,
                ],
                check=True,
            )
            prep_seconds = time.perf_counter() - t0
            prep_peak_rss_mb = _maxrss_mb(resource.RUSAGE_CHILDREN)
        source_glob = os.path.join(prep_dir, "as_of_date=*", "*.parquet")
        timestamp_field = TS_COLUMN
    else:
        _snapshot_files(snapshots)
        source_glob = os.path.join(snapshots, "as_of_date=*", "*.parquet")
        timestamp_field = "as_of"
    children_rss_before = _maxrss_mb(resource.RUSAGE_CHILDREN)

    import feast
    import ibis
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.data_format import ParquetFormat
    from feast.repo_config import RepoConfig
    from feast.types import Float32, String

    # --- the Feast repo, built programmatically ----------------------------
    repo = os.path.join(work, "repo")
    os.makedirs(os.path.join(repo, "data"))
    config = RepoConfig(
        project="feast_pit_bench",
        provider="local",
        registry={"registry_type": "file", "path": os.path.join(repo, "data", "registry.db")},
        offline_store={"type": "duckdb"},
        online_store={"type": "sqlite", "path": os.path.join(repo, "data", "online.db")},
        entity_key_serialization_version=3,
        repo_path=repo,
    )
    store = FeatureStore(config=config)

    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    source = FileSource(
        name="snapshots",
        path=source_glob,
        file_format=ParquetFormat(),
        timestamp_field=timestamp_field,
    )
    ttl = timedelta(hours=args.ttl_hours)
    view = FeatureView(
        name="snap",
        entities=[customer],
        ttl=ttl,
        schema=[Field(name="customer_id", dtype=String)]
        + [Field(name=f, dtype=Float32) for f in features],
        source=source,
        online=False,
    )
    store.apply([customer, view])

    # The duckdb offline store runs its ibis.read_parquet / memtable
    # expressions on ibis's default backend, an in-process DuckDB connection
    # made on first use (about 0.5 s). Open it here, untimed, as a store would
    # be opened once; DuckDB settings go to that same connection.
    con = ibis.get_backend()
    con.raw_sql("SELECT 1").fetchall()
    if args.threads:
        con.raw_sql(f"SET threads = {int(args.threads)}")
    if args.memory_limit:
        con.raw_sql(f"SET memory_limit = '{args.memory_limit}'")

    # --- entity rows (not timed) -------------------------------------------
    entity_df = pq.read_table(args.entities, columns=["customer_id", "event_ts"]).to_pandas()
    entity_df = entity_df.rename(columns={"event_ts": "event_timestamp"})
    if args.lag_mode == "entity-shift":
        entity_df["event_timestamp"] = entity_df["event_timestamp"] - timedelta(
            hours=args.lag_hours
        )
    refs = [f"snap:{f}" for f in features]
    _log(
        f"feast {feast.__version__}: {len(entity_df)} entity rows, features {features}, "
        f"ttl {args.ttl_hours}h, lag via {args.lag_mode}"
    )

    # --- the timed query ---------------------------------------------------
    rss_before_query_mb = _maxrss_mb(resource.RUSAGE_SELF)
    timings = []
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        job = store.get_historical_features(entity_df=entity_df, features=refs)
        if hasattr(job, "to_arrow"):
            result = job.to_arrow()
        else:  # pragma: no cover - every supported Feast has to_arrow
            result = job.to_df()
        timings.append(time.perf_counter() - t0)
    seconds = min(timings)
    if isinstance(result, pa.Table):
        out_rows = result.num_rows
        non_null = out_rows - result.column(features[0]).null_count
    else:  # pragma: no cover
        out_rows = len(result)
        non_null = int(result[features[0]].notna().sum())

    if args.output:
        table = result if isinstance(result, pa.Table) else pa.Table.from_pandas(result)
        pq.write_table(table, args.output)

    children_rss = _maxrss_mb(resource.RUSAGE_CHILDREN)
    peak_rss_mb = _maxrss_mb(resource.RUSAGE_SELF) + (
        children_rss if children_rss > children_rss_before else 0.0
    )
    record = {
        "feast_version": feast.__version__,
        "rows": int(out_rows),
        "seconds": round(seconds, 4),
        "rows_per_s": round(out_rows / seconds, 1) if seconds > 0 else None,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "prep_seconds": round(prep_seconds, 4),
        "ttl_hours": args.ttl_hours,
        "seconds_all": [round(t, 4) for t in timings],
        "entity_rows": len(entity_df),
        "non_null_rows": int(non_null),
        "lag_mode": args.lag_mode,
        "prep_reused": prep_reused,
        "prep_peak_rss_mb": round(prep_peak_rss_mb, 1),
        "rss_before_query_mb": round(rss_before_query_mb, 1),
        "threads": args.threads,
        "offline_store": "duckdb",
        "ttl_note": (
            f"Feast FeatureView ttl={args.ttl_hours}h: Feast takes the customer's latest "
            "row with ts <= t and ts >= t - ttl, falling back to older partitions within "
            "the ttl; ours takes the newest partition with as_of+lag <= t and gives nulls "
            "for a customer absent from it, at any age. Values need not match."
        ),
    }
    sys.stdout.flush()
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
