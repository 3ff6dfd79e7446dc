"""Run the dbt models' compiled SQL directly in DuckDB on hand-made rows.

`dbt compile` renders every intermediate and mart model once per session for a fixed snapshot
range; each property case then executes that SQL against in-memory tables in milliseconds,
instead of a full `dbt build` (seconds) per case.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from dataclasses import asdict
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from resources import dbt_cli
from tests.feature_oracle import Label, Txn

DATABASE = "oracle"  # the DuckDB file's stem: compiled SQL names relations "oracle"."main".x
MODELS = (
    "int_customer_days_rolled_up",
    "int_customer_categories_rolled_up",
    "int_customer_countries_rolled_up",
    "int_customer_devices_rolled_up",
    "int_labelled_purchases",
    "fct_customer_features_daily",
    "fct_device_features_daily",
    "fct_merchant_features_daily",
    "fct_card_features_daily",
)
ENTITY_MARTS = {
    "device": "fct_device_features_daily",
    "merchant": "fct_merchant_features_daily",
    "card": "fct_card_features_daily",
}


def compile_models(workdir: Path, start: date, end: date, retention_days: int = 365) -> dict:
    env = {
        **os.environ,
        "RISK_DUCKDB_PATH": str(workdir / f"{DATABASE}.duckdb"),
        "RISK_LAKEHOUSE_URI": str(workdir / "lakehouse"),
    }
    variables = {"start_date": str(start), "end_date": str(end), "retention_days": retention_days}
    subprocess.run(
        [
            dbt_cli.dbt_executable(),
            "compile",
            "--quiet",
            "--profiles-dir",
            ".",
            "--target-path",
            str(workdir / "target"),
            "--select",
            *MODELS,
            "--vars",
            json.dumps(variables),
        ],
        cwd=dbt_cli.DBT_PROJECT_DIR,
        env=env,
        check=True,
    )
    compiled = workdir / "target" / "compiled" / "risk_features" / "models"
    return {m: next(compiled.rglob(f"{m}.sql")).read_text() for m in MODELS}


def _category_risk() -> pa.Table:
    with open(dbt_cli.DBT_PROJECT_DIR / "seeds" / "category_risk.csv") as f:
        return pa.Table.from_pylist(list(csv.DictReader(f)))


def build_snapshots(
    compiled: dict,
    transactions: list[Txn],
    labels: list[Label],
    mart: str = "fct_customer_features_daily",
) -> dict[tuple[str, date], dict]:
    """A mart's rows (the customer snapshot's unless ``mart`` names an entity's) keyed by
    (its key, as_of_date), computed by the compiled SQL."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute(f"attach ':memory:' as {DATABASE}")
    con.execute(f"use {DATABASE}")
    tx = pa.Table.from_pylist(
        [asdict(t) for t in transactions],
        schema=pa.schema(
            [
                ("transaction_id", pa.string()),
                ("customer_id", pa.string()),
                ("event_ts", pa.timestamp("us", tz="UTC")),
                ("amount", pa.decimal128(18, 2)),
                ("merchant_category", pa.string()),
                ("channel", pa.string()),
                ("device_id", pa.string()),
                ("country", pa.string()),
                ("installments", pa.int16()),
                ("merchant_id", pa.string()),
                ("card_hash", pa.string()),
            ]
        ),
    )
    lb = pa.Table.from_pylist(
        [asdict(lab) for lab in labels],
        schema=pa.schema(
            [
                ("transaction_id", pa.string()),
                ("label", pa.string()),
                ("label_ts", pa.timestamp("us", tz="UTC")),
            ]
        ),
    )
    con.register("tx", tx)
    con.register("lb", lb)
    con.register("seed", _category_risk())
    con.execute(
        "create table stg_raw__transactions as select *, event_ts::date as event_date from tx"
    )
    con.execute("create table stg_raw__labels as select *, label_ts::date as label_date from lb")
    con.execute("create table category_risk as select * from seed")
    for model in MODELS:
        con.execute(f"create table {model} as {compiled[model]}")
    result = con.sql(f"select * from {mart}")
    names = result.columns
    return {
        (r[0], r[names.index("as_of_date")]): dict(zip(names, r, strict=True))
        for r in result.fetchall()
    }
