"""Names shared across the asset graph's boundaries, defined once: asset groups (jobs select by
them), the monitoring assets' keys, and the metadata keys the retrain sensors read."""

from dagster import AssetKey

# Asset groups, as the UI shows them.
INGEST, LAKEHOUSE, ONLINE_STORE, TRAINING, MONITORING = (
    "ingest",
    "lakehouse",
    "online_store",
    "training",
    "monitoring",
)

DRIFT = AssetKey([MONITORING, "feature_drift"])
PERFORMANCE = AssetKey([MONITORING, "realized_performance"])

# Metadata measured per feature or per target, as f"{metric}/{name}" (plottable in the UI).
PSI = "psi"  # on feature_drift: PSI of a snapshot feature or of the score
AUC_DROP = "auc_drop"  # on realized_performance: test AUC minus realized AUC


def metric_key(metric: str, name: str) -> str:
    return f"{metric}/{name}"
