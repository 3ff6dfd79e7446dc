"""Names shared across the asset graph's boundaries, defined once: asset groups (jobs select by
them), the monitoring assets' keys, and the metadata keys the retrain sensors read."""

from dagster import AssetKey

# Asset groups, as the UI shows them.
INGEST, LAKEHOUSE, ONLINE_STORE, TRAINING, MONITORING, ROLLOUT = (
    "ingest",
    "lakehouse",
    "online_store",
    "training",
    "monitoring",
    "rollout",  # a release's way from canary to full (not partitioned: it runs on a timer)
)

# Concurrency pools (resources/dagster.yaml: one run at a time holds a pool; runs that hold
# none, or another, run beside it):
# the warehouse's writers: DuckDB has one writer, and the daily tables one day's run at a time;
WAREHOUSE_POOL = "warehouse"
# what trains models and moves their aliases (the gate, the canary's promotion or halt).
REGISTRY_POOL = "registry"

DRIFT = AssetKey([MONITORING, "feature_drift"])
PERFORMANCE = AssetKey([MONITORING, "realized_performance"])
CANARY_CHECK = AssetKey([ROLLOUT, "canary_comparison"])

# Metadata measured per feature or per target, as f"{metric}/{name}" (plottable in the UI).
PSI = "psi"  # on feature_drift: PSI of a snapshot feature or of the score
AUC_DROP = "auc_drop"  # on realized_performance: test AUC minus realized AUC


def metric_key(metric: str, name: str) -> str:
    return f"{metric}/{name}"


# The snapshot features account takeovers and BNPL default ramps move first (the generator's
# planted patterns, docs/data.md), and the model's score itself.
KEY_FEATURES = (
    "score",
    "txn_count_7d",
    "amount_mean_30d",
    "amount_std_30d",
    "new_device_ratio_7d",
    "distinct_devices_30d",
    "distinct_countries_30d",
    "high_risk_category_ratio_30d",
    "bnpl_ratio_30d",
    "amount_trend_7d_30d",
    "count_trend_7d_90d",
)
