"""Drift: the feature_drift asset on real Delta snapshots against a real MLflow champion's
reference (PSI metadata, evidently's report), and the retrain sensor's cursor cases."""

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunRequest,
    SkipReason,
    build_sensor_context,
    job,
    materialize,
    op,
)

from assets.monitoring.assets import feature_drift
from resources.lakehouse import CUSTOMER_FEATURES
from sensors.drift import DRIFT, build_drift_sensor
from tests.serving_env import SERVED_AS_OF
from tests.snapshot_tables import snapshot_table


@op
def _train():
    pass


@job(name="train_models")
def train_models():
    _train()


def _measure(instance: DagsterInstance, champion: str | None = None, **psis: float) -> None:
    metadata = {"as_of": "2026-05-01", **{f"psi/{k}": v for k, v in psis.items()}}
    if champion:
        metadata["champion"] = champion
    instance.report_runless_asset_event(AssetMaterialization(DRIFT, metadata=metadata))


def _tick(instance, cursor=None, **options):
    sensor = build_drift_sensor(train_models, **options)
    context = build_sensor_context(instance=instance, cursor=cursor)
    return sensor(context), context.cursor


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as instance:
        yield instance


def test_nothing_measured_no_run(instance):
    result, _ = _tick(instance)
    assert isinstance(result, SkipReason) and "no PSI measured" in result.skip_message


def test_no_drift_no_run_and_a_warning_band(instance):
    _measure(instance, score=0.02, amount_mean_30d=0.05)
    result, cursor = _tick(instance)
    assert isinstance(result, SkipReason) and "warning" not in result.skip_message
    _measure(instance, score=0.02, amount_mean_30d=0.15)
    result, _ = _tick(instance, cursor)
    assert isinstance(result, SkipReason) and "warning: {'amount_mean_30d': 0.15}" in (
        result.skip_message
    )


def test_drift_opens_one_run_naming_what_drifted(instance):
    _measure(instance, score=0.25, amount_mean_30d=0.35, txn_count_7d=0.01, not_key=0.9)
    result, cursor = _tick(instance)
    assert isinstance(result, RunRequest)
    assert result.tags["risk/trigger"] == "drift"
    assert result.tags["risk/psi"] == "amount_mean_30d=0.350, score=0.250"
    assert json.loads(cursor)["retrain_at"] <= time.time()
    again, _ = _tick(instance, cursor)  # the same measurement: nothing new
    assert isinstance(again, SkipReason) and "no new PSI" in again.skip_message


def test_drift_again_inside_the_cooldown_opens_no_second_run(instance):
    _measure(instance, score=0.4)
    first, cursor = _tick(instance)
    assert isinstance(first, RunRequest)
    _measure(instance, score=0.5)
    second, cursor = _tick(instance, cursor)
    assert isinstance(second, SkipReason) and "cooldown" in second.skip_message
    _measure(instance, score=0.5)
    after, _ = _tick(instance, cursor, cooldown_s=0)  # cooldown over
    assert isinstance(after, RunRequest)


def test_the_cursor_survives_a_restart(instance):
    _measure(instance, score=0.4)
    _, cursor = _tick(instance)
    saved = json.loads(cursor)
    _measure(instance, score=0.45)
    result, _ = _tick(instance, json.dumps(saved))  # a new sensor object, the stored cursor
    assert isinstance(result, SkipReason) and "cooldown" in result.skip_message


def test_a_retrain_in_flight_is_not_duplicated(instance):
    instance.add_run(
        DagsterRun(
            job_name="train_models", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED
        )
    )
    _measure(instance, score=0.4)
    result, _ = _tick(instance)
    assert isinstance(result, SkipReason) and "in flight" in result.skip_message


def _finished(instance, request: RunRequest, status=DagsterRunStatus.SUCCESS) -> None:
    """The run the daemon would have launched for ``request``, ended with ``status``."""
    run_id = str(uuid.uuid4())
    instance.add_run(
        DagsterRun(job_name="train_models", run_id=run_id, status=status, tags=request.tags)
    )


def test_one_retrain_answers_a_drift_episode_until_it_ends(instance):
    _measure(instance, score=0.4, champion="risk_fraud/1")
    first, cursor = _tick(instance)
    assert isinstance(first, RunRequest)
    episode = first.tags["risk/drift_episode"]
    _finished(instance, first)  # the retrain promoted v2: the drift goes on against it
    _measure(instance, score=0.5, champion="risk_fraud/2")
    second, cursor = _tick(instance, cursor, cooldown_s=0)
    assert isinstance(second, SkipReason) and "was answered by" in second.skip_message
    _measure(instance, score=0.15)  # a warning still: the same episode
    _, cursor = _tick(instance, cursor, cooldown_s=0)
    _measure(instance, score=0.3)
    third, cursor = _tick(instance, cursor, cooldown_s=0)
    assert isinstance(third, SkipReason) and "was answered by" in third.skip_message
    _measure(instance, score=0.05)  # every watched PSI below the warning: the episode ended
    ended, cursor = _tick(instance, cursor, cooldown_s=0)
    assert isinstance(ended, SkipReason) and "episode ended" in ended.skip_message
    _measure(instance, score=0.3)  # a new episode
    fourth, _ = _tick(instance, cursor, cooldown_s=0)
    assert isinstance(fourth, RunRequest) and fourth.tags["risk/drift_episode"] != episode


def test_a_failed_drift_retrain_answered_nothing(instance):
    _measure(instance, score=0.4)
    first, cursor = _tick(instance)
    _finished(instance, first, DagsterRunStatus.FAILURE)
    _measure(instance, score=0.4)
    second, _ = _tick(instance, cursor, cooldown_s=0)
    assert isinstance(second, RunRequest)
    assert second.tags["risk/drift_episode"] == first.tags["risk/drift_episode"]


@pytest.mark.integration
def test_the_drift_asset_measures_psi_against_the_champions_snapshot(env, monkeypatch, tmp_path):
    """The champion's reference is the snapshot it was trained on: the same partition gives
    PSI 0 everywhere; a partition where one feature moved gives it alone a high PSI, an
    evidently report, and a retrain run from the sensor."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", env.tracking_uri)
    monkeypatch.setenv("RISK_DATA_DIR", str(tmp_path))
    MlflowClient(env.tracking_uri).set_registered_model_alias("risk_fraud", "champion", "1")
    with DagsterInstance.ephemeral() as instance:

        def measure(as_of_day):
            partition = (as_of_day - timedelta(days=1)).isoformat()
            result = materialize(
                [feature_drift],
                partition_key=partition,
                instance=instance,
                resources={"lakehouse": env.lakehouse},
            )
            event = result.asset_materializations_for_node("monitoring__feature_drift")[0]
            return {k: v.value for k, v in event.metadata.items()}

        same = measure(SERVED_AS_OF)
        assert same["reference_as_of"] == SERVED_AS_OF.isoformat()
        assert same["max_psi"] == 0.0 and same["champion"] == "risk_fraud/1"

        moved_day = SERVED_AS_OF + timedelta(days=1)
        moved = snapshot_table(env.feature_set, 1500, SERVED_AS_OF, seed=28)
        shifted = pc.add(moved["txn_count_7d"], pa.scalar(25, pa.int32()))
        moved = moved.set_column(
            moved.schema.get_field_index("txn_count_7d"), "txn_count_7d", shifted
        )
        # A day later, every customer is a day older (an age is compared like with like).
        aged = pc.add(moved["days_since_first_txn"], 1.0)
        moved = moved.set_column(
            moved.schema.get_field_index("days_since_first_txn"), "days_since_first_txn", aged
        )
        as_of = pa.array(
            [datetime(moved_day.year, moved_day.month, moved_day.day, tzinfo=UTC)] * 1500,
            pa.timestamp("us", "UTC"),
        )
        moved = moved.set_column(moved.schema.get_field_index("as_of"), "as_of", as_of)
        moved = moved.set_column(
            moved.schema.get_field_index("as_of_date"),
            "as_of_date",
            pa.array([moved_day] * 1500, pa.date32()),
        )
        env.lakehouse.replace_partitions(
            CUSTOMER_FEATURES, moved, ["as_of_date"], f"as_of_date = '{moved_day}'"
        )
        # Live decisions of the day before (the champion's, logged as /score logs them).
        from fastapi.testclient import TestClient

        from riskcore import settings
        from serving.app import create_app
        from tests.serving_env import API_KEY

        log_uri = settings.load().inference_log(
            env.lakehouse.root
        )  # where the drift asset reads it
        with TestClient(create_app(env.config(inference_log_uri=log_uri))) as client:
            for row in env.served_rows().to_pylist()[:80]:
                txn = env.transaction(row["transaction_id"])
                assert client.post("/score", json=txn, headers={"X-API-Key": API_KEY}).is_success
            client.app.state.scorer.inference_log.flush()
        drifted = measure(moved_day)
        assert 0 <= drifted["psi/score"] < 100 and 0 <= drifted["psi/served/amount"] < 100
        assert drifted["psi/txn_count_7d"] > 1
        others = [
            v
            for k, v in drifted.items()
            if k.startswith("psi/")
            and k != "psi/txn_count_7d"
            and k != "psi/score"
            and not k.startswith("psi/served/")
        ]
        assert max(others) == 0.0
        assert "txn_count_7d" in drifted["drifting"]
        report = Path(drifted["evidently_report"])
        assert report.exists() and "txn_count_7d" in report.read_text()
        assert drifted["evidently_agrees"].startswith("yes"), drifted["evidently_agrees"]
        assert drifted["evidently_report_url"].endswith(f"/feature_drift/{moved_day}.html")

        run, _ = _tick(instance)
        assert isinstance(run, RunRequest) and "txn_count_7d=" in run.tags["risk/psi"]


def test_the_evidently_report_leaves_out_columns_without_values(tmp_path):
    import numpy as np
    import pandas as pd

    from assets.monitoring.drift import evidently_report

    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"a": rng.normal(0, 1, 500), "empty": np.nan})
    current = pd.DataFrame({"a": rng.normal(1, 1, 500), "empty": np.nan})
    path, _ = evidently_report(reference, current, ["a", "empty"], tmp_path / "r.html")
    assert path.exists() and path.stat().st_size > 10_000


def test_evidently_and_our_psi_fall_on_the_same_side_of_the_thresholds(tmp_path):
    """Given our bins, evidently's PSI is ours: the UI's headline, the sensor and the report
    name the same features above 0.1 and 0.2 (shifts from none to large, nulls, a constant)."""
    import numpy as np
    import pandas as pd

    from assets.monitoring.assets import _side
    from assets.monitoring.drift import bin_labels, evidently_report
    from riskcore.psi import Reference, psi

    rng = np.random.default_rng(3)
    n = 20_000
    reference = {f"shift_{s}": rng.normal(0, 1, n) for s in (0.0, 0.1, 0.25, 0.4, 0.6, 1.5)}
    reference["nulls"] = np.where(rng.random(n) < 0.1, np.nan, rng.exponential(1, n))
    reference["constant"] = np.full(n, 3.0)
    current = {
        **{name: rng.normal(float(name[6:]), 1, n) for name in reference if name[:5] == "shift"},
        "nulls": np.where(rng.random(n) < 0.4, np.nan, rng.exponential(1, n)),
        "constant": np.where(rng.random(n) < 0.3, 4.0, 3.0),
    }
    refs = {name: Reference.of(values) for name, values in reference.items()}
    ours = {name: psi(refs[name], current[name]) for name in reference}

    def binned(columns: dict) -> pd.DataFrame:
        return pd.DataFrame({k: bin_labels(v, refs[k].edges.tolist()) for k, v in columns.items()})

    _, theirs = evidently_report(
        binned(reference), binned(current), list(reference), tmp_path / "r.html"
    )
    assert set(theirs) == set(ours)
    for name in ours:
        assert _side(ours[name]) == _side(theirs[name]), (name, ours[name], theirs[name])
        assert abs(ours[name] - theirs[name]) < 0.02, (name, ours[name], theirs[name])
    assert {_side(v) for v in ours.values()} == {0, 1, 2}  # every side is exercised
