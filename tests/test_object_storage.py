"""The lakehouse on object storage: an S3-compatible server (moto's, in server mode: a real
HTTP endpoint speaking the S3 API) started by the test, and the project pointed at it by
configuration only (RISK_LAKEHOUSE_URI=s3://..., the AWS_* variables). The daily job ingests,
builds and exports snapshots through dbt's Delta plugin, the snapshots equal the oracle,
serving writes its inference log there, monitoring reads it back, and compaction rewrites it.
"""

import logging
from datetime import UTC, date, datetime, timedelta

import boto3
import pytest
from dagster import DagsterInstance
from deltalake import DeltaTable

from resources import local_redis
from resources.lakehouse import CUSTOMER_FEATURES, TRANSACTIONS, Lakehouse

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BUCKET = "risk-lakehouse"
FIRST, LAST = date(2026, 1, 1), date(2026, 1, 4)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    port = local_redis.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    credentials = {
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",  # the test's server speaks plain HTTP on loopback
        # One writer per table at a time here (Dagster's warehouse pool; one log writer per
        # replica, appends only). Several replicas appending to one log need S3's
        # conditional writes or a lock (docs/architecture.md#scaling-out).
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }
    _client(credentials).create_bucket(Bucket=BUCKET)
    yield credentials
    server.stop()


@pytest.fixture
def on_s3(s3, monkeypatch, tmp_path):
    for name, value in s3.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RISK_LAKEHOUSE_URI", f"s3://{BUCKET}/lake")
    monkeypatch.setenv("RISK_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    return Lakehouse()


def _client(s3: dict):
    return boto3.client(
        "s3",
        endpoint_url=s3["AWS_ENDPOINT_URL"],
        region_name=s3["AWS_REGION"],
        aws_access_key_id=s3["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3["AWS_SECRET_ACCESS_KEY"],
    )


def _objects(s3: dict, prefix: str) -> list[str]:
    pages = _client(s3).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_the_daily_job_reads_and_writes_its_delta_tables_on_object_storage(on_s3, s3):
    from demo.run import run_partition_range
    from tests.test_pipeline_end_to_end import _assert_matches_oracle

    assert on_s3.root == f"s3://{BUCKET}/lake"
    result = run_partition_range(FIRST, LAST, DagsterInstance.ephemeral())
    assert result.success
    # Raw and snapshot tables are Delta tables in the bucket, and nowhere else.
    keys = _objects(s3, "lake/")
    for table in ("raw/transactions", "raw/labels", "features/customer_features_daily"):
        assert any(k.startswith(f"lake/{table}/_delta_log/") for k in keys), table
    for table in ("raw/transactions", "features/customer_features_daily"):  # no labels yet
        assert any(k.startswith(f"lake/{table}/") and k.endswith(".parquet") for k in keys)
    as_of_dates = {
        d.as_py() for d in on_s3.dataset(CUSTOMER_FEATURES).to_table(["as_of_date"])["as_of_date"]
    }
    assert as_of_dates == {FIRST + timedelta(days=i) for i in range(1, 5)}
    _assert_matches_oracle(datetime(2026, 1, 5, tzinfo=UTC))
    # Re-running a partition gives the same table, as on a local disk.
    before = on_s3.dataset(TRANSACTIONS).to_table().sort_by("transaction_id")
    assert run_partition_range(LAST, LAST, DagsterInstance.ephemeral()).success
    assert on_s3.dataset(TRANSACTIONS).to_table().sort_by("transaction_id") == before


def test_serving_logs_to_object_storage_and_monitoring_reads_and_compacts_it(on_s3, s3, env):
    from fastapi.testclient import TestClient

    from assets.monitoring.decision_log import read_decisions
    from sensors.jobs import inference_log_maintenance
    from serving.app import create_app
    from tests.serving_env import API_KEY

    uri = f"s3://{BUCKET}/lake/serving/inference_log"
    app = create_app(env.config(inference_log_uri=uri, log_flush_s=0.2, log_commit_s=0.2))
    ids = env.purchases["transaction_id"].to_pylist()[:40]
    with TestClient(app) as client:
        for transaction_id in ids:
            answer = client.post(
                "/score", json=env.transaction(transaction_id), headers={"X-API-Key": API_KEY}
            )
            assert answer.status_code == 200, answer.text
    # The service commits what is left on the way out: every decision is in the bucket.
    assert any(k.startswith("lake/serving/inference_log/_delta_log/") for k in _objects(s3, ""))
    logged = read_decisions(
        on_s3, datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    )
    assert sorted(logged["transaction_id"].to_pylist()) == sorted(ids)
    # Compaction (closed days; today's is open) and vacuum run against the bucket.
    table = DeltaTable(uri)
    rows_before = table.to_pyarrow_table().sort_by("transaction_id")
    result = inference_log_maintenance.execute_in_process(resources={"lakehouse": on_s3})
    assert result.success
    assert DeltaTable(uri).to_pyarrow_table().sort_by("transaction_id") == rows_before
