"""Retraining on evidence: sensors that open a `train_models` run when a monitoring asset's
newest measurement crosses an action threshold.

* ``drift_retrain`` watches ``monitoring/feature_drift``: the score's or a key feature's PSI
  above 0.2 (warning above 0.1);
* ``performance_retrain`` watches ``monitoring/realized_performance``: the champion's realized
  AUC on its newest matured week more than 0.05 below its test AUC (warning above 0.02).

The run's tags name what triggered it; the retrain ends in the champion/challenger gate, so
neither replaces a better model unseen. A cooldown kept in the sensor's cursor (JSON: the last
measurement seen, the last retrain time) prevents retrain storms, and a retrain already queued
or running is not duplicated.

Drift is measured against the fraud champion's reference snapshot, so once a drift retrain has
finished against a champion, the gate has answered that drift: it promoted a challenger (a new
reference, measured afresh) or judged on fair weeks that the champion still wins. The same drift
against the same champion then opens no further retrain, however long it lasts: the weekly
retrain learns the new data and ``performance_retrain`` watches what the champion actually
achieves. A drift retrain that failed answered nothing, and the cooldown alone applies."""

from __future__ import annotations

import json

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

from assets.names import AUC_DROP, DRIFT, KEY_FEATURES, PERFORMANCE, PSI, metric_key
from riskcore import settings
from riskcore.targets import TARGETS
from sensors.status import SENSOR_STATUS

REFERENCE_TAG = "risk/measured_against"
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def build_retrain_sensor(
    job: JobDefinition,
    *,
    name: str,
    asset: AssetKey,
    metric: str,  # metadata keys are f"{metric}/{watched}"
    watched: tuple[str, ...],
    act: float,
    warn: float,
    cooldown_s: float,
    trigger: str,  # the run's risk/trigger tag
    what: str,  # what is measured, for people
    against: str | None = None,  # metadata key of what is measured against (see the docstring)
) -> SensorDefinition:
    @sensor(
        name=name,
        job=job,
        minimum_interval_seconds=300,
        default_status=SENSOR_STATUS,
        description=f"Opens a {job.name} run when a watched {what} passes {act} (warns above "
        f"{warn}); at most one per {cooldown_s / 3600:g} h"
        + (
            f", and none for a {what} a finished retrain answered against the same {against}."
            if against
            else "."
        ),
    )
    def retrain(context: SensorEvaluationContext):
        cursor = json.loads(context.cursor) if context.cursor else {}
        records = context.instance.fetch_materializations(asset, limit=1).records
        if not records:
            return SkipReason(f"no {what} measured yet")
        event = records[0]
        if event.storage_id == cursor.get("event"):
            return SkipReason(f"no new {what} measurement")
        cursor["event"] = event.storage_id
        context.update_cursor(json.dumps(cursor))
        metadata = event.event_log_entry.asset_materialization.metadata
        values = {w: metadata.get(metric_key(metric, w)) for w in watched}
        values = {w: float(v.value) for w, v in values.items() if v is not None}
        over = {w: v for w, v in values.items() if v > act}
        if not over:
            warned = {w: round(v, 3) for w, v in values.items() if v > warn}
            return SkipReason(
                f"no watched {what} above {act}" + (f"; warning: {warned}" if warned else "")
            )
        reference = metadata.get(against) if against else None
        reference = str(reference.value) if reference is not None else ""
        if reference and (answer := _answered(context, job.name, trigger, reference)):
            return SkipReason(
                f"{what} {over} against {reference}, already answered by {job.name} run "
                f"{answer.run_id[:8]}: its gate kept {reference}; the weekly retrain and "
                "performance_retrain carry on from here"
            )
        now = settings.load().now().timestamp()
        since = now - cursor.get("retrain_at", 0)
        if since < cooldown_s:
            return SkipReason(
                f"{what} {over}, but a retrain opened {since / 3600:.1f} h ago "
                f"(cooldown {cooldown_s / 3600:g} h)"
            )
        if context.instance.get_runs(RunsFilter(job_name=job.name, statuses=IN_FLIGHT), limit=1):
            return SkipReason(f"{what} {over}, and a {job.name} run is already in flight")
        cursor["retrain_at"] = now
        context.update_cursor(json.dumps(cursor))
        named = ", ".join(f"{w}={v:.3f}" for w, v in sorted(over.items(), key=lambda kv: -kv[1]))
        as_of = metadata.get("as_of")
        return RunRequest(
            run_key=f"{trigger}:{event.storage_id}",
            tags={
                "risk/trigger": trigger,
                f"risk/{metric}": named,
                "risk/measured_as_of": str(as_of.value) if as_of else "",
                **({REFERENCE_TAG: reference} if reference else {}),
            },
        )

    return retrain


def _answered(context: SensorEvaluationContext, job_name: str, trigger: str, reference: str):
    """The newest successful run this sensor opened against ``reference``, if any."""
    runs = context.instance.get_runs(
        RunsFilter(
            job_name=job_name,
            tags={"risk/trigger": trigger, REFERENCE_TAG: reference},
            statuses=[DagsterRunStatus.SUCCESS],
        ),
        limit=1,
    )
    return runs[0] if runs else None


def build_drift_sensor(
    job: JobDefinition,
    *,
    key_features: tuple[str, ...] = KEY_FEATURES,
    act_psi: float = 0.2,
    warn_psi: float = 0.1,
    cooldown_s: float = 24 * 3600,
) -> SensorDefinition:
    return build_retrain_sensor(
        job,
        name="drift_retrain",
        asset=DRIFT,
        metric=PSI,
        watched=key_features,
        act=act_psi,
        warn=warn_psi,
        cooldown_s=cooldown_s,
        trigger="drift",
        what="PSI",
        against="champion",
    )


def build_performance_sensor(
    job: JobDefinition,
    *,
    act_drop: float = 0.05,
    warn_drop: float = 0.02,
    cooldown_s: float = 7 * 24 * 3600,
) -> SensorDefinition:
    return build_retrain_sensor(
        job,
        name="performance_retrain",
        asset=PERFORMANCE,
        metric=AUC_DROP,
        watched=TARGETS,
        act=act_drop,
        warn=warn_drop,
        cooldown_s=cooldown_s,
        trigger="performance",
        what="realized AUC drop",
    )
