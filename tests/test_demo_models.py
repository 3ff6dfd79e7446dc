"""The demo as a user runs it (generator -> dbt -> Delta -> Redis -> training set -> LightGBM ->
MLflow), on the demo's own world (its population and days) in its own data folder: it ends with
registered champions and prints their metrics; the behavioural models score where public models
do, and behaviour earns its place: for both targets the behavioural model clearly beats the
transaction-only one on the same test rows (a broken point-in-time join or snapshot, or a
behavioural model without its behavioural features, would close the gap). Everything is seeded
and deterministic, so the figures are the same on every run."""

import pytest

from assets.training.dataset import read_training_set

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run_metrics(data, target: str) -> dict[str, float]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{data / 'mlflow' / 'mlflow.db'}")
    champion = client.get_model_version_by_alias(f"risk_{target}", "champion")
    return client.get_run(champion.run_id).data.metrics


def _champion_metrics(data, target: str) -> dict[str, dict[str, float]]:
    metrics = _run_metrics(data, target)
    kinds = ("behavioural", "transaction_only")
    return {
        k: {m.split(".", 1)[1]: v for m, v in metrics.items() if m.startswith(k + ".")}
        for k in kinds
    }


def _pair(metrics: dict, name: str) -> tuple[float, float]:
    """(behavioural, transaction-only) on the same test rows: known customers'."""
    return metrics["behavioural"][name], metrics["transaction_only"][f"known_customers.{name}"]


def test_the_demo_ends_with_champions_and_prints_their_metrics(demo):
    data, stdout = demo
    assert "risk_fraud champion v1" in stdout and "risk_default champion v1" in stdout
    assert "Online store" in stdout and "ROC AUC" in stdout
    fraud = _champion_metrics(data, "fraud")
    assert set(fraud["behavioural"]) >= {
        "roc_auc",
        "pr_auc",
        "precision_at_1pct",
        "precision_at_5pct",
        "recall_at_1pct_fpr",
        "top_decile_lift",
        "brier",
        "expected_calibration_error",
    }


# Where the behavioural models must land (public card-fraud and BNPL default models), and what
# the customer's history must add over the transaction-only model on the same rows (which reads
# the device's, merchant's and card's features too: docs/architecture.md#model-tiers): ROC AUC
# points, top-decile lift ratio, PR AUC and recall at 1% FPR. Observed (seeded, 2026-12-01 with
# the entities): fraud ROC AUC 0.947 vs 0.930, PR AUC +0.056, recall +0.048, lift 8.9 vs 8.7;
# default 0.786 vs 0.694, PR AUC +0.133, recall +0.171, lift 4.7 vs 3.8 (`make demo`'s live
# calendar: fraud 0.959 vs 0.947, default 0.802 vs 0.698). Before the entities the fraud gap was
# wide (0.933 vs 0.776): the entities carry most of what tells fraud apart on this world, the
# history adds the rest; for default the history still carries most. Without its behavioural
# features the behavioural model is the transaction-only one and every gain bar fails.
RANGES = {"fraud": (0.92, 0.97), "default": (0.75, 0.82)}
MIN_GAIN_ROC_AUC = {"fraud": 0.008, "default": 0.05}
MIN_LIFT_RATIO = {"fraud": 0.95, "default": 1.15}  # fraud: no worse (1.02 observed)
MIN_GAIN_PR_AUC = {"fraud": 0.03, "default": 0.1}
MIN_GAIN_RECALL = {"fraud": 0.02, "default": 0.08}


@pytest.mark.parametrize("target", ["fraud", "default"])
def test_behaviour_earns_its_place(demo, target):
    data, _ = demo
    metrics = _champion_metrics(data, target)
    names = ("roc_auc", "pr_auc", "recall_at_1pct_fpr", "precision_at_5pct", "top_decile_lift")
    print(target, {name: _pair(metrics, name) for name in names})
    behavioural, fallback = _pair(metrics, "roc_auc")
    low, high = RANGES[target]
    assert low <= behavioural <= high
    assert behavioural - fallback >= MIN_GAIN_ROC_AUC[target]
    behavioural, fallback = _pair(metrics, "top_decile_lift")
    assert behavioural >= MIN_LIFT_RATIO[target] * fallback
    behavioural, fallback = _pair(metrics, "pr_auc")
    assert behavioural - fallback >= MIN_GAIN_PR_AUC[target]
    behavioural, fallback = _pair(metrics, "recall_at_1pct_fpr")
    assert behavioural - fallback >= MIN_GAIN_RECALL[target]
    # The same margins, as logged with the run for a business to read.
    logged = _run_metrics(data, target)
    margin = {k.removeprefix("margin."): v for k, v in logged.items() if k.startswith("margin.")}
    assert margin["roc_auc_gain"] >= MIN_GAIN_ROC_AUC[target]
    assert margin["top_decile_lift_ratio"] >= MIN_LIFT_RATIO[target]


def test_entity_features_earn_their_place(demo, demo_env, monkeypatch):
    """Device, merchant and card features (`make bench-entities`: their snapshots and the
    device's real-time features) on the demo's training set: the same fraud models with them
    beat the models without them on the same test rows, and catch at least twice the planted
    rings' fraud at 1% FPR. Observed (seeded; overall, as serving routes; measured with the
    entity snapshots, before the device's real-time features joined them): ROC AUC 0.906 ->
    0.951, PR AUC 0.357 -> 0.668, recall at 1% FPR 0.50 -> 0.76 (`make demo`'s live calendar of
    2026-12-01, with them: 0.878 -> 0.958, rings 0.23 -> 1.00 of 47). With no entity feature
    the two are the same models and both bars fail."""
    from benchmarks import entities
    from resources.lakehouse import TRAINING_SET, Lakehouse

    data, _ = demo
    for name in ("RISK_DATA_DIR", "RISK_CUSTOMERS", "DAGSTER_HOME"):
        monkeypatch.setenv(name, demo_env[name])
    lakehouse = Lakehouse(root_uri=str(data / "lakehouse"))
    rings = entities.ring_purchase_ids(lakehouse)
    table = read_training_set(lakehouse)
    results = entities.compare(table, rings, lakehouse.last_commit(TRAINING_SET))
    print({k: (v["roc_auc"], v["pr_auc"], v["recall_at_1pct_fpr"]) for k, v in results.items()})
    print({k: v["ring_recall_at_1pct_fpr"] for k, v in results.items() if "ring_purchases" in v})
    with_, without = results["overall with"], results["overall without"]
    assert with_["roc_auc"] - without["roc_auc"] >= 0.02
    assert with_["ring_purchases"] >= 20
    caught, before = with_["ring_recall_at_1pct_fpr"], without["ring_recall_at_1pct_fpr"]
    assert caught >= 2 * before and caught > 0
