"""Models: the leakage canary through the real point-in-time path, and the champion/challenger
gate against a real MLflow registry (SQLite)."""

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from assets.training.dataset import TrainingWindow, build_training_set, table_vocabularies
from assets.training.models import gate, log_and_register, train_bundle, train_model
from assets.training.sampling import NegativeSampling
from resources.lakehouse import CUSTOMER_FEATURES, LABELS, TRANSACTIONS, Lakehouse
from riskcore.model_spec import BEHAVIOURAL, ModelSpec
from riskcore.registry import ModelRegistry
from tests.snapshot_tables import snapshot_table

pytestmark = [pytest.mark.integration, pytest.mark.slow]
START = date(2026, 3, 1)
CANARY = "prior_fraud_count_90d"  # a snapshot feature made to carry the label (after the fact)


@pytest.fixture(scope="module")
def lakehouse_with_canary(tmp_path_factory, feature_set):
    """3000 customers, one purchase each over four weeks (fraud: 6%, larger amounts); a daily
    snapshot of every customer whose CANARY column holds the purchase's label from the day
    after the purchase on: a join that looked ahead would find a perfect feature."""
    lakehouse = Lakehouse(root_uri=str(tmp_path_factory.mktemp("lakehouse")))
    rng = np.random.default_rng(5)
    n = 3000
    customers = [f"c{i:09d}" for i in range(n)]
    at = [
        datetime(2026, 3, 3, tzinfo=UTC) + timedelta(seconds=int(s))
        for s in rng.integers(0, 28 * 86_400, n)
    ]
    fraud = rng.random(n) < 0.06
    amounts = np.where(fraud, rng.lognormal(5, 1, n), rng.lognormal(3.5, 1, n))
    purchases = pa.table(
        {
            "transaction_id": [f"t{i}" for i in range(n)],
            "customer_id": customers,
            "event_ts": pa.array(at, pa.timestamp("us", "UTC")),
            "amount": pa.array([f"{a:.2f}" for a in amounts]).cast(pa.decimal128(18, 2)),
            "currency": ["EUR"] * n,
            "merchant_id": ["m"] * n,
            "merchant_category": rng.choice(["grocery", "crypto"], n),
            "channel": rng.choice(["online", "pos"], n),
            "device_id": ["d"] * n,
            "country": ["DE"] * n,
            "installments": pa.array([1] * n, pa.int16()),
            "card_hash": ["0" * 64] * n,
        }
    )
    for day in sorted({a.date() for a in at}):
        on_day = pc.equal(pc.cast(pc.cast(purchases["event_ts"], pa.date32()), pa.date32()), day)
        lakehouse.replace_day(TRANSACTIONS, purchases.filter(on_day), "event_date", day)
    fraud_ids = [f"t{i}" for i in np.flatnonzero(fraud)]
    label_ts = [at[i] + timedelta(days=1) for i in np.flatnonzero(fraud)]
    labels = pa.table(
        {
            "transaction_id": fraud_ids,
            "label": ["fraud"] * len(fraud_ids),
            "label_ts": pa.array(label_ts, pa.timestamp("us", "UTC")),
        }
    )
    lakehouse.replace_day(LABELS, labels, "label_date", date(2026, 4, 15))
    for offset in range(0, 33):
        as_of_day = START + timedelta(days=offset)
        as_of = datetime(as_of_day.year, as_of_day.month, as_of_day.day, tzinfo=UTC)
        table = snapshot_table(feature_set, n, as_of_day, seed=offset)
        canary = [int(f) if as_of > t else 0 for f, t in zip(fraud, at, strict=True)]
        table = table.set_column(
            table.schema.get_field_index(CANARY), CANARY, pa.array(canary, pa.int32())
        )
        lakehouse.replace_partitions(
            CUSTOMER_FEATURES, table, ["as_of_date"], f"as_of_date = '{as_of_day}'"
        )
    return lakehouse


@pytest.fixture(scope="module")
def training(lakehouse_with_canary, feature_set):
    window = TrainingWindow(
        date(2026, 3, 3),
        date(2026, 3, 30),
        datetime(2026, 5, 1, tzinfo=UTC),
        maturity_days={"fraud": 2, "default": 2},
        valid_weeks=1,
        test_weeks=1,
    )
    return build_training_set(lakehouse_with_canary, feature_set, window)


def test_the_leakage_canary_carries_no_signal(training, feature_set):
    """Snapshots dated after a purchase hold its label; the point-in-time join never picks
    them, so the canary is 0 on every training row and the model gives it no importance."""
    assert pc.max(training[CANARY]).as_py() == 0
    assert pc.sum(training["fraud_label"]).as_py() > 100
    spec = ModelSpec.build("fraud", BEHAVIOURAL, feature_set, table_vocabularies(training), 6)
    trained = train_model(training, spec)
    assert trained.importance[CANARY] == 0
    assert trained.metrics["roc_auc"] > 0.7  # it learned the real signal (amounts)


def test_negative_sampling_keeps_the_scores_calibrated_and_the_test_weeks_whole(
    training, feature_set
):
    """Every positive and a fifth of the negatives, weighted by 5: the model's mean score on
    the (unsampled) test weeks stays at the bad rate. Unweighted, a fifth of the negatives
    would have it predict about four times as much fraud."""
    spec = ModelSpec.build("fraud", BEHAVIOURAL, feature_set, table_vocabularies(training), 6)
    full = train_model(training, spec, sampling=NegativeSampling(1.0))
    sampled = train_model(training, spec, sampling=NegativeSampling(0.2, seed=3))
    assert sampled.train_rows["sampled"] < 0.3 * sampled.train_rows["full"]
    assert full.train_rows["sampled"] == full.train_rows["full"] == sampled.train_rows["full"]
    assert len(sampled.test_labels) == len(full.test_labels)  # the test weeks are never sampled
    bad_rate = full.test_labels.mean()
    assert sampled.test_scores.mean() == pytest.approx(bad_rate, abs=0.02)
    assert abs(sampled.test_scores.mean() - full.test_scores.mean()) < 0.02
    assert sampled.metrics["roc_auc"] > full.metrics["roc_auc"] - 0.05


@pytest.fixture
def registry(tmp_path, monkeypatch):
    return f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts")


def _register(training, feature_set, registry, shuffle=False):
    table = training
    if shuffle:  # a deliberately worse model: labels carry no signal
        labels = table["fraud_label"].to_numpy(zero_copy_only=False).copy()
        np.random.default_rng(1).shuffle(labels)
        table = table.set_column(
            table.schema.get_field_index("fraud_label"), "fraud_label", pa.array(labels)
        )
    bundle, trained = train_bundle(table, "fraud", feature_set, table_vocabularies(training), 6.0)
    tracking, artifacts = registry
    version, _ = log_and_register(
        bundle,
        trained,
        training_hash="h",
        model_name="risk_fraud",
        tracking_uri=tracking,
        artifact_root=artifacts,
    )
    return version, trained


def test_the_gate_keeps_a_worse_challenger_and_promotes_a_better_one(
    training, feature_set, registry
):
    from mlflow import MlflowClient

    tracking, _ = registry
    client = MlflowClient(tracking)
    # Promoted at once (no canary): the gate alone. The canary path: the next test.
    v1, noise = _register(training, feature_set, registry, shuffle=True)
    first = gate(
        "risk_fraud", v1, noise["behavioural"], training, tracking_uri=tracking, canary_share=0
    )
    assert first.promoted and "first model" in first.reason

    v2, better = _register(training, feature_set, registry)
    decision = gate(
        "risk_fraud", v2, better["behavioural"], training, tracking_uri=tracking, canary_share=0
    )
    assert decision.promoted, decision.reason
    assert decision.challenger_auc > decision.champion_auc + 0.1

    v3, worse = _register(training, feature_set, registry, shuffle=True)
    decision = gate(
        "risk_fraud", v3, worse["behavioural"], training, tracking_uri=tracking, canary_share=0
    )
    assert not decision.promoted and "stays challenger" in decision.reason
    assert str(client.get_model_version_by_alias("risk_fraud", "champion").version) == v2
    assert str(client.get_model_version_by_alias("risk_fraud", "challenger").version) == v3
    champion = ModelRegistry(tracking).load_bundle("risk_fraud", "@champion")
    assert (
        champion.behavioural.booster.model_to_string()
        == better["behavioural"].model.booster.model_to_string()
    )

    v4, _ = _register(training, feature_set, registry)
    refused = gate(
        "risk_fraud",
        v4,
        better["behavioural"],
        training,
        tracking_uri=tracking,
        checks_passed=False,
        canary_share=0,
    )
    assert not refused.promoted and "failed its checks" in refused.reason
    assert str(client.get_model_version_by_alias("risk_fraud", "champion").version) == v2


def test_a_challenger_that_passes_the_gate_becomes_the_canary_and_a_newer_one_supersedes_it(
    training, feature_set, registry
):
    tracking, _ = registry
    store = ModelRegistry(tracking)
    v1, first = _register(training, feature_set, registry)
    assert gate(
        "risk_fraud", v1, first["behavioural"], training, tracking_uri=tracking, canary_share=0.05
    ).promoted
    assert store.canary("risk_fraud") is None  # the first model: champion directly

    v2, better = _register(training, feature_set, registry)
    decision = gate(
        "risk_fraud", v2, better["behavioural"], training, tracking_uri=tracking, canary_share=0.05
    )
    assert decision.canary and not decision.promoted
    assert store.alias_version("risk_fraud") == v1  # the champion still decides for most
    version, share, since = store.canary("risk_fraud")
    assert (version, share) == (v2, 0.05) and since
    assert "canary on 5% of customers" in store.model_version("risk_fraud", v2).description

    v3, newer = _register(training, feature_set, registry)
    gate("risk_fraud", v3, newer["behavioural"], training, tracking_uri=tracking, canary_share=0.05)
    assert store.canary("risk_fraud")[0] == v3
    assert store.model_version("risk_fraud", v2).tags["canary_end"] == f"superseded by v{v3}"

    assert not store.promote_canary("risk_fraud", v2, "judged v2, but v3 runs now")
    assert store.end_canary("risk_fraud", "judged v2", version=v2) is None
    assert store.promote_canary("risk_fraud", v3, "clean")
    assert store.alias_version("risk_fraud") == v3 and store.canary("risk_fraud") is None
    assert store.previous_champion("risk_fraud") == (v3, v1)  # rollback's way back
    # A rollback judged on an earlier champion (a promotion landed while the daily job judged
    # it: they run beside each other) moves nothing.
    assert store.roll_back("risk_fraud", "judged v1", judged=v1) is None
    assert store.alias_version("risk_fraud") == v3
    assert store.roll_back("risk_fraud", "test", judged=v3) == v1
    assert store.alias_version("risk_fraud") == v1

    # Promoted at once (share 0) while a canary runs: the canary stops acting.
    v4, fourth = _register(training, feature_set, registry)
    gate(
        "risk_fraud", v4, fourth["behavioural"], training, tracking_uri=tracking, canary_share=0.05
    )
    assert store.canary("risk_fraud")[0] == v4
    v5, fifth = _register(training, feature_set, registry)
    gate("risk_fraud", v5, fifth["behavioural"], training, tracking_uri=tracking, canary_share=0)
    assert store.alias_version("risk_fraud") == v5 and store.canary("risk_fraud") is None


def test_a_registered_model_carries_its_spec_references_and_plots(training, feature_set, registry):
    import json

    import mlflow
    from mlflow import MlflowClient

    tracking, _ = registry
    version, _ = _register(training, feature_set, registry)
    client = MlflowClient(tracking)
    run = client.get_run(client.get_model_version("risk_fraud", version).run_id)
    assert run.data.tags["training_set_hash"] == "h"
    assert run.data.tags["feature_set_version"] == feature_set.version
    assert run.data.tags["code_version"]
    assert run.data.params["seed"] == "7"
    mlflow.set_tracking_uri(tracking)
    evaluation = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="evaluation"
    )
    files = set(os.listdir(evaluation))
    assert {
        "roc_pr.png",
        "importance_behavioural.png",
        "reference_behavioural.json",
        "calibration_transaction_only.json",
    } <= files
    reference = json.loads(Path(evaluation, "reference_behavioural.json").read_text())
    spec = ModelRegistry(tracking).load_bundle("risk_fraud", version).behavioural.spec
    assert list(reference["features"]) == list(spec.feature_names)
    assert reference["score"]["edges"] and reference["test_score"]["edges"]
    assert spec.snapshot_features == tuple(c.name for c in feature_set.features)
    assert spec.feature_set_version == feature_set.version
    assert "lifecycle_stage" in spec.categorical and "merchant_category" in spec.categorical


def test_the_gate_judges_only_on_purchases_after_both_models_validation_weeks(
    training, feature_set, registry
):
    """A champion whose validation weeks reach past the challenger's test weeks cannot be
    compared with it there (it tuned on them): the gate says so and the champion stays; on
    the same training set the weeks used are named in the decision and on the version."""
    from mlflow import MlflowClient

    tracking, _ = registry
    client = MlflowClient(tracking)
    v1, first = _register(training, feature_set, registry)
    gate("risk_fraud", v1, first["behavioural"], training, tracking_uri=tracking)
    # A champion trained later: its validation weeks reach the newest purchase of this set.
    client.set_tag(
        client.get_model_version("risk_fraud", v1).run_id,
        "split.valid.last",
        pc.max(training["event_ts"]).as_py().isoformat(),
    )
    v2, second = _register(training, feature_set, registry)
    decision = gate("risk_fraud", v2, second["behavioural"], training, tracking_uri=tracking)
    assert not decision.promoted and decision.reason.startswith("cannot judge"), decision.reason
    assert str(client.get_model_version_by_alias("risk_fraud", "champion").version) == v1
    assert client.get_model_version("risk_fraud", v2).tags["gate"].startswith("stays challenger")

    # Recorded honestly: the champion's own weeks end where the training set's validation does.
    client.set_tag(
        client.get_model_version("risk_fraud", v1).run_id,
        "split.valid.last",
        first["behavioural"].splits["split.valid.last"],
    )
    v3, third = _register(training, feature_set, registry)
    decision = gate("risk_fraud", v3, third["behavioural"], training, tracking_uri=tracking)
    assert decision.promoted and decision.judged_on in decision.reason
    version = client.get_model_version("risk_fraud", v3)
    assert decision.judged_on in version.description and version.tags["replaces"] == v1


def test_declined_purchases_have_no_outcome_and_the_holdout_stands_for_them(
    env, monkeypatch, tmp_path
):
    """With RISK_CENSOR_DECLINES, a purchase serving declined leaves the training set (its
    outcome is never seen in production) and a held-out would-be decline weighs 1 / the share;
    without, the training set is the one every purchase labelled gives."""
    from deltalake import write_deltalake

    from assets.training.dataset import TrainingWindow, build_training_set
    from serving.inference_log import LogRow, to_table
    from tests import serving_env

    ids = env.training["transaction_id"].to_pylist()
    declined, held, approved = ids[100], ids[200], ids[300]

    def row(transaction_id: str, decision: str, holdout: bool, scored: int) -> LogRow:
        return LogRow(
            transaction_id=transaction_id,
            customer_hash="h",
            event_ts=0,
            scored_at=scored,
            decision=decision,
            fraud_score=0.9,
            default_score=None,
            fraud_model="risk_fraud/1",
            default_model=None,
            model_kind="behavioural",
            feature_set_version=None,
            features_as_of=None,
            feature_source="online",
            lookup_ms=0.1,
            inference_ms=0.1,
            total_ms=0.2,
            holdout=holdout,
            holdout_weight=20.0 if holdout else None,
        )

    purchases = {
        r["transaction_id"]: r
        for r in env.training.select(["transaction_id", "event_ts"]).to_pylist()
    }
    at = lambda t, later=0: int(purchases[t]["event_ts"].timestamp() * 1e6) + later  # noqa: E731
    rows = [
        row(declined, "decline", False, at(declined, 1000)),
        row(declined, "approve", False, at(declined, 9000)),  # a retry decides nothing new
        row(held, "approve", True, at(held, 1000)),
        row(approved, "approve", False, at(approved, 1000)),
    ]
    for r in rows:
        r.event_ts = at(r.transaction_id)
    log_uri = str(tmp_path / "inference_log")
    write_deltalake(log_uri, to_table(rows), mode="append", partition_by=["scored_date"])
    monkeypatch.setenv("RISK_INFERENCE_LOG_URI", log_uri)
    start = serving_env.START
    window = TrainingWindow(
        start,
        start + timedelta(days=serving_env.DAYS - 2),
        datetime(2026, 6, 1, tzinfo=UTC),
        maturity_days={"fraud": 2, "default": 2},
        valid_weeks=1,
        test_weeks=1,
    )
    everything = build_training_set(env.lakehouse, env.feature_set, window)
    assert everything.num_rows == env.training.num_rows
    assert set(everything["sample_weight"].to_pylist()) == {1.0}
    monkeypatch.setenv("RISK_CENSOR_DECLINES", "1")
    censored = build_training_set(env.lakehouse, env.feature_set, window)
    weight = dict(
        zip(
            censored["transaction_id"].to_pylist(),
            censored["sample_weight"].to_pylist(),
            strict=True,
        )
    )
    assert declined not in weight and censored.num_rows == everything.num_rows - 1
    assert weight[held] == 20.0 and weight[approved] == 1.0
