"""The canary (docs/architecture.md#rollout): its comparison with the champion against hand-made
decisions, and the whole path on real parts: a real serving app routing customers by hash, its
real inference log, the sensor, the asset halting a deliberately worse canary and promoting a
good one after its clean period, serving following the registry."""

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from dagster import DagsterInstance, RunRequest, SkipReason, build_sensor_context, materialize
from deltalake import DeltaTable

from assets.monitoring.canary import CanaryLimits, compare
from riskcore.registry import CANARY_END, CANARY_SHARE, ModelRegistry
from serving.scorer import customer_bucket

LIMITS = CanaryLimits(
    clean_hours=24,
    min_decisions=500,
    max_decline_rate_delta=0.02,
    max_review_rate_delta=0.05,
    max_score_psi=0.2,
    max_bad_rate_delta=0.01,
)
START = datetime(2026, 11, 1, tzinfo=UTC)
NO_LABELS = pl.DataFrame(
    schema={"transaction_id": pl.Utf8, "label": pl.Utf8, "label_ts": pl.Datetime("us", "UTC")}
)


def _log(n: int, canary_share: float, canary_declines: float, *, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    canary = rng.uniform(size=n) < canary_share
    declines = np.where(canary, canary_declines, 0.03)
    decision = np.where(rng.uniform(size=n) < declines, "decline", "approve")
    return pl.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(n)],
            "event_ts": [START + timedelta(minutes=i) for i in range(n)],
            "scored_at": [START + timedelta(minutes=i) for i in range(n)],
            "decision": decision,
            "fraud_score": rng.uniform(size=n),
            "fraud_model": np.where(canary, "risk_fraud/2", "risk_fraud/1"),
            "fraud_role": np.where(canary, "canary", "champion"),
        }
    )


def test_a_canary_declining_more_is_halted_with_the_reason():
    log = _log(4000, 0.25, 0.10)
    judged = compare(log, NO_LABELS, "fraud", START, START + timedelta(hours=12), LIMITS)
    assert judged.verdict == "halt" and "decline rate" in judged.reason, judged.reason
    assert judged.canary.model == "risk_fraud/2" and judged.champion.model == "risk_fraud/1"
    # Only the decisions made by then count (the period is the canary's).
    assert judged.canary.decisions + judged.champion.decisions == 721
    assert judged.traffic_share == pytest.approx(judged.canary.decisions / 721)


def test_a_clean_canary_waits_for_its_clean_period_and_enough_decisions_then_is_promoted():
    log = _log(4000, 0.25, 0.03)
    early = compare(log, NO_LABELS, "fraud", START, START + timedelta(hours=10), LIMITS)
    assert early.verdict == "continue", early.reason
    done = compare(log, NO_LABELS, "fraud", START, START + timedelta(hours=67), LIMITS)
    assert done.verdict == "promote" and done.canary.decisions >= 500, done.reason
    few = compare(log, NO_LABELS, "fraud", START, START + timedelta(hours=3), LIMITS)
    assert few.canary.decisions < 100 and few.verdict == "continue"  # too few to judge


def test_approved_purchases_that_turn_out_bad_halt_a_canary():
    log = _log(3000, 0.5, 0.03)
    canary_approved = log.filter(
        (pl.col("fraud_role") == "canary") & (pl.col("decision") == "approve")
    )
    labels = pl.DataFrame(
        {
            "transaction_id": canary_approved["transaction_id"][:60],
            "label": ["fraud"] * 60,
            "label_ts": [START + timedelta(hours=1)] * 60,
        }
    )
    judged = compare(log, labels, "fraud", START, START + timedelta(days=3), LIMITS)
    assert judged.verdict == "halt" and "bad rate among approved" in judged.reason
    # A label not yet known at ``now`` does not count.
    before = compare(log, labels, "fraud", START, START + timedelta(minutes=59), LIMITS)
    assert before.canary.approved_labelled_bad == 0


def test_a_customer_always_falls_in_the_same_bucket_and_buckets_spread_evenly():
    assert customer_bucket("c000123") == customer_bucket("c000123")
    buckets = np.array([customer_bucket(f"c{i:06d}") for i in range(20_000)])
    assert 0 <= buckets.min() and buckets.max() < 1
    assert abs((buckets < 0.05).mean() - 0.05) < 0.006


# -- the whole path -------------------------------------------------------------------------


def _shuffled(env) -> pa.Table:
    labels = np.random.default_rng(5).permutation(
        env.training["fraud_label"].to_numpy(zero_copy_only=False)
    )
    index = env.training.schema.get_field_index("fraud_label")
    return env.training.set_column(
        index, "fraud_label", pa.array(labels, env.training.schema.field("fraud_label").type)
    )


def _traffic(client, env, n: int = 1200) -> list[dict]:
    from tests.test_serving import AUTH

    ids = env.purchases["transaction_id"].to_pylist()[:n]
    out = []
    for start in range(0, len(ids), 400):
        batch = [env.transaction(t) for t in ids[start : start + 400]]
        response = client.post("/score/batch", json={"transactions": batch}, headers=AUTH)
        assert response.status_code == 200, response.text
        out += [
            r | {"customer_id": t["customer_id"]}
            for r, t in zip(response.json()["results"], batch, strict=True)
        ]
    client.app.state.scorer.inference_log.flush()
    return out


def _check(env, monkeypatch, log_uri: str) -> dict:
    from assets.monitoring.assets import canary_comparison
    from sensors.canary import canary_watch

    monkeypatch.setenv("RISK_INFERENCE_LOG_URI", log_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env.tracking_uri)
    with DagsterInstance.ephemeral() as instance:
        request = canary_watch(build_sensor_context(instance=instance))
        assert isinstance(request, RunRequest), request
        result = materialize(
            [canary_comparison], instance=instance, resources={"lakehouse": env.lakehouse}
        )
    event = result.asset_materializations_for_node("rollout__canary_comparison")[0]
    return {k: v.value for k, v in event.metadata.items()}


def _wait_for(client, check, what: str) -> None:
    deadline = time.monotonic() + 20
    while not check(client.app.state.scorer.models):
        assert time.monotonic() < deadline, f"serving did not pick up {what}"
        time.sleep(0.1)


@pytest.mark.integration
def test_a_worse_canary_is_halted_and_a_good_one_promoted_after_its_clean_period(
    env, monkeypatch, tmp_path
):
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from tests import serving_env

    registry = ModelRegistry(env.tracking_uri)
    champion = registry.alias_version("risk_fraud")
    log_uri = str(tmp_path / "inference_log")
    monkeypatch.setenv("RISK_CANARY_SHARE", "0.3")
    monkeypatch.setenv("RISK_CANARY_CLEAN_HOURS", "0")
    monkeypatch.setenv("RISK_CANARY_MIN_DECISIONS", "200")
    try:
        with DagsterInstance.ephemeral() as instance:  # no canary: the sensor skips
            assert isinstance(canary_watch_once(instance), SkipReason)
        # A deliberately worse release (shuffled labels) put on canary by hand: the gate would
        # refuse it.
        worse = serving_env.register(
            _shuffled(env), env.feature_set, env.tracking_uri, tmp_path, "fraud"
        )
        assert registry.alias_version("risk_fraud") == champion
        registry.start_canary("risk_fraud", worse, 0.3, datetime.now(UTC).isoformat(), "test")
        app = create_app(
            env.config(
                inference_log_uri=log_uri, alias_poll_s=0.1, log_flush_s=0.5, log_commit_s=0.5
            )
        )
        with TestClient(app) as client:
            scored = _traffic(client, env)
            roles = {r["customer_id"]: r["model_role"]["fraud"] for r in scored}
            for r in scored:  # a customer always sees the same model, by its bucket
                assert r["model_role"]["fraud"] == roles[r["customer_id"]]
                expected = "canary" if customer_bucket(r["customer_id"]) < 0.3 else "champion"
                assert r["model_role"]["fraud"] == expected
                version = worse if expected == "canary" else champion
                assert r["model_version"]["fraud"] == f"risk_fraud/{version}"
                assert r["thresholds"]["fraud"]["source"] == "model"
            measured = _check(env, monkeypatch, log_uri)
            assert measured["canary/fraud"].startswith(f"halted risk_fraud/{worse}: "), measured
            reason = registry.model_version("risk_fraud", worse).tags[CANARY_END]
            assert "score PSI" in reason or "rate" in reason
            assert registry.canary("risk_fraud") is None
            assert registry.alias_version("risk_fraud") == champion
            _wait_for(client, lambda m: not m.canaries, "the halt")
            halted_share = measured["canary_share/fraud"]

            # A good release through the gate: it passes, becomes the canary, is promoted.
            good = serving_env.register(
                env.training, env.feature_set, env.tracking_uri, tmp_path, "fraud"
            )
            assert registry.canary("risk_fraud")[0] == good
            _wait_for(client, lambda m: "fraud" in m.canaries, "the new canary")
            # The share widened by hand (the version's tag, e.g. in MLflow's UI) reaches
            # serving without a restart.
            registry.client.set_model_version_tag("risk_fraud", good, CANARY_SHARE, "0.5")
            _wait_for(client, lambda m: m.canary_shares.get("fraud") == 0.5, "the new share")
            _traffic(client, env)
            measured = _check(env, monkeypatch, log_uri)
            assert measured["canary/fraud"].startswith(f"promoted risk_fraud/{good} to full"), (
                measured
            )
            assert registry.alias_version("risk_fraud") == good
            _wait_for(client, lambda m: m.champions["fraud"].version == good, "the promotion")
            after = _traffic(client, env, 200)
            assert {r["model_role"]["fraud"] for r in after} == {"champion"}
        # The inference log: the share of traffic each model acted on.
        log = pl.from_arrow(DeltaTable(log_uri).to_pyarrow_table())
        shares = log.group_by("fraud_model", "fraud_role").len().sort("fraud_model", "fraud_role")
        acted = {(m, r): n for m, r, n in shares.iter_rows()}
        assert acted[(f"risk_fraud/{worse}", "canary")] > 200
        assert acted[(f"risk_fraud/{good}", "canary")] > 200
        assert acted[(f"risk_fraud/{good}", "champion")] == 200
        assert 0.2 < halted_share < 0.4
    finally:
        registry.end_canary("risk_fraud", "test over")
        registry.client.set_registered_model_alias("risk_fraud", "champion", champion)


def canary_watch_once(instance):
    from sensors.canary import canary_watch

    return canary_watch(build_sensor_context(instance=instance))
