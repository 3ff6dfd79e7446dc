"""Drift -> retraining: a sensor that opens a `train_models` run when the newest drift
measurement (`monitoring/feature_drift`) has the score, or a key feature, above the action
threshold. The run's tags name what triggered it; the retrain ends in the champion/challenger
gate, so drift never replaces a better model unseen. A cooldown kept in the sensor's cursor
(JSON: the last measurement seen, the last retrain time) prevents retrain storms, and a retrain
already queued or running is not duplicated."""

from __future__ import annotations

import json
import time

from dagster import (
    AssetKey,
    DagsterRunStatus,
    JobDefinition,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

DRIFT = AssetKey(["monitoring", "feature_drift"])
# The snapshot features account takeovers and BNPL default ramps move first (README: the
# generator's planted patterns), and the model's score itself.
KEY_FEATURES = (
    "score", "txn_count_7d", "amount_mean_30d", "amount_std_30d", "new_device_ratio_7d",
    "distinct_devices_30d", "distinct_countries_30d", "high_risk_category_ratio_30d",
    "bnpl_ratio_30d", "amount_trend_7d_30d", "count_trend_7d_90d",
)  # fmt: skip
IN_FLIGHT = [
    DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]  # fmt: skip


def build_drift_sensor(
    job: JobDefinition,
    *,
    key_features: tuple[str, ...] = KEY_FEATURES,
    act_psi: float = 0.2,
    warn_psi: float = 0.1,
    cooldown_s: float = 24 * 3600,
    name: str = "drift_retrain",
) -> SensorDefinition:
    @sensor(
        name=name, job=job, minimum_interval_seconds=300,
        description=f"Opens a {job.name} run when the score or a key feature drifts past PSI "
        f"{act_psi} (warns above {warn_psi}); at most one per {cooldown_s / 3600:g} h.",
    )  # fmt: skip
    def drift_retrain(context: SensorEvaluationContext):
        cursor = json.loads(context.cursor) if context.cursor else {}
        records = context.instance.fetch_materializations(DRIFT, limit=1).records
        if not records:
            return SkipReason("no drift measured yet")
        event = records[0]
        if event.storage_id == cursor.get("event"):
            return SkipReason("no new drift measurement")
        cursor["event"] = event.storage_id
        context.update_cursor(json.dumps(cursor))
        metadata = event.event_log_entry.asset_materialization.metadata
        watched = {
            f: float(metadata[f"psi/{f}"].value) for f in key_features if f"psi/{f}" in metadata
        }
        over = {f: v for f, v in watched.items() if v > act_psi}
        if not over:
            warned = {f: round(v, 3) for f, v in watched.items() if v > warn_psi}
            return SkipReason(f"no key feature above PSI {act_psi}" +
                              (f"; warning: {warned}" if warned else ""))  # fmt: skip
        since = time.time() - cursor.get("retrain_at", 0)
        if since < cooldown_s:
            return SkipReason(f"drift {over}, but a retrain opened {since / 3600:.1f} h ago "
                              f"(cooldown {cooldown_s / 3600:g} h)")  # fmt: skip
        if context.instance.get_runs(RunsFilter(job_name=job.name, statuses=IN_FLIGHT), limit=1):
            return SkipReason(f"drift {over}, and a {job.name} run is already in flight")
        cursor["retrain_at"] = time.time()
        context.update_cursor(json.dumps(cursor))
        drifted = ", ".join(f"{f}={v:.3f}" for f, v in sorted(over.items(), key=lambda kv: -kv[1]))
        return RunRequest(
            run_key=f"drift:{event.storage_id}",
            tags={"risk/trigger": "drift", "risk/drifted": drifted,
                  "risk/drift_as_of": str(metadata["as_of"].value)},
        )  # fmt: skip

    return drift_retrain
