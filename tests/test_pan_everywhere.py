"""Card numbers seeded into every entry are found in no store afterwards.

Entries: a landing file (every text field, and a label file) run through the daily job in a
data folder of its own (ingest, quarantine, dbt, snapshots, the online store, Dagster's storage),
and the service: every endpoint, and the event stream. Then every store is read back by decoding
it (demo/pan_scan.py): Delta tables as tables plus their JSON logs and checkpoints, DuckDB
table by table, MLflow's and Dagster's SQLite databases, artifacts, Redis through the server
plus its append-only files, logs and responses. The landing folder itself is not read: it holds
what the partner delivered, not what we keep.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import redis
from fastapi.testclient import TestClient

from demo.pan_scan import SEEDED, redis_card_numbers, stored_card_numbers
from resources import local_redis
from riskcore.pan import find_pan
from riskcore.settings import PROJECT_ROOT
from serving.app import create_app
from serving.event_stream import EventConsumer, publish
from tests.serving_env import API_KEY

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DAY = date(2026, 1, 3)
TEXT_FIELDS = ("transaction_id", "customer_id", "merchant_id", "merchant_category", "device_id")
GOOD = {
    "transaction_id": "partner-1",
    "customer_id": "c000000001",
    "event_ts": f"{DAY}T10:00:00Z",
    "amount": "12.50",
    "currency": "EUR",
    "merchant_id": "m1",
    "merchant_category": "grocery",
    "channel": "pos",
    "device_id": "d1",
    "country": "DE",
    "installments": "1",
    "card_hash": "ab" * 32,
}
PIPELINE = textwrap.dedent(
    f"""
    from datetime import date
    from dagster import DagsterInstance
    from demo.run import run_partition_range
    result = run_partition_range(date.fromisoformat("{DAY}"), date.fromisoformat("{DAY}"),
                                 DagsterInstance.get())
    raise SystemExit(0 if result.success else 1)
    """
)


def _landing_files(landing: Path) -> None:
    rows = [GOOD]
    rows += [
        GOOD | {"transaction_id": f"seeded-{i}", field: pan}
        for i, (field, pan) in enumerate((f, p) for f in TEXT_FIELDS for p in SEEDED)
    ]
    rows += [GOOD | {"transaction_id": "seeded-channel", "channel": SEEDED[0]}]
    folder = landing / "transactions" / DAY.isoformat()
    folder.mkdir(parents=True)
    pacsv.write_csv(pa.Table.from_pylist(rows), folder / "partner.csv")
    ragged = ",".join(GOOD.values()) + f",{SEEDED[1]}\n"  # a ragged row quoting a card number
    with (folder / "partner.csv").open("a") as f:
        f.write(ragged)
    labels = landing / "labels" / DAY.isoformat()
    labels.mkdir(parents=True)
    pacsv.write_csv(
        pa.Table.from_pylist(
            [
                {"transaction_id": pan, "label": "chargeback", "label_ts": f"{DAY}T12:00:00Z"}
                for pan in SEEDED
            ]
        ),
        labels / "labels.csv",
    )


@pytest.fixture(scope="module")
def pipeline_data(tmp_path_factory) -> Path:
    """The daily job over one day with card numbers in its landing files, in its own folder."""
    data = tmp_path_factory.mktemp("pan-data")
    (data / "dagster_home").mkdir()
    shutil.copy(PROJECT_ROOT / "resources" / "dagster.yaml", data / "dagster_home")
    _landing_files(data / "landing")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"RISK_LAKEHOUSE_URI", "RISK_DUCKDB_PATH", "RISK_LANDING_DIR", "REDIS_URL"}
    }
    env |= {
        "RISK_DATA_DIR": str(data),
        "DAGSTER_HOME": str(data / "dagster_home"),
        "RISK_CUSTOMERS": "300",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", PIPELINE], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    yield data
    local_redis.stop(data / "online_store")


def _wait_for_aof_rewrite(client: redis.Redis) -> None:
    deadline = time.monotonic() + 30
    while client.info("persistence")["aof_rewrite_in_progress"]:
        assert time.monotonic() < deadline, "AOF rewrite did not finish"
        time.sleep(0.05)


def test_no_card_number_survives_in_any_store(pipeline_data, env):
    client = redis.Redis.from_url(env.redis.url)
    txn = env.transaction("t000004")
    responses = []
    with TestClient(create_app(env.config())) as api:
        auth = {"X-API-Key": API_KEY}
        assert api.post("/score", json=txn, headers=auth).status_code == 200
        for pan in SEEDED:
            cases = [
                ("/score", txn | {"transaction_id": pan}),
                ("/score", txn | {"features": {pan: 1.0}}),
                ("/score/batch", {"transactions": [txn, txn | {"device_id": pan}]}),
                ("/events", txn | {"merchant_id": pan}),
                ("/events", txn | {"note": pan}),
                # beside the list of a batch
                ("/score/batch", {"transactions": [txn], "note": pan}),
                ("/events", {"events": [txn], "note": pan}),
            ]
            digits = re.sub(r"\D", "", pan)
            if len(digits) <= 19:  # the card number alone, as a JSON number
                number = int(digits)
                cases += [
                    ("/score", txn | {"amount": number}),
                    ("/score", txn | {"features": {"txn_count_7d": number}}),
                    ("/score", txn | {"card": {"number": number}}),
                ]
            for path, body in cases:
                response = api.post(path, json=body, headers=auth)
                assert response.status_code == 422, response.text
                responses.append(response.text)
        responses.append(api.get(f"/features/{SEEDED[0]}", headers=auth).text)
    # A producer that puts card numbers on the stream: dead-lettered masked, deleted, and the
    # append-only file rewritten so that it no longer holds them either.
    stream = "risk:events:pan-test"
    consumer = EventConsumer(client, stream=stream, group="pan-test", block_ms=10)
    consumer.ensure_group()
    publish(client, [txn | {"transaction_id": pan} for pan in SEEDED], stream=stream)
    consumer.poll()
    assert consumer.dead == len(SEEDED)
    _wait_for_aof_rewrite(client)

    assert not any(find_pan(text) for text in responses)
    assert redis_card_numbers(client) == []
    online = local_redis.ensure_running(pipeline_data / "online_store")
    assert redis_card_numbers(redis.Redis.from_url(online)) == []
    assert stored_card_numbers(pipeline_data / "landing")  # the reader sees what was seeded
    assert stored_card_numbers(pipeline_data, skip=("landing",)) == []
    assert stored_card_numbers(Path(env.log_uri).parent) == []  # MLflow, the log, Redis files
