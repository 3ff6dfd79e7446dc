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

Drift comes in episodes: a shift in the population crosses the action threshold, and its
rolling windows keep drifting for weeks after (a 90-day window takes 90 days to fill with the
new behaviour), against any reference taken meanwhile. One retrain answers an episode: once a
drift retrain has finished, drift opens no other until the episode has ended (every watched
PSI back below the warning threshold, which re-arms the sensor), however long it lasts and
whichever champion it is measured against; the weekly retrain learns the new data and
``performance_retrain`` watches what the champion actually achieves. A drift retrain that
failed answered nothing: the cooldown alone applies. (The performance sensor has no episodes:
each matured week is new evidence.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime

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

EPISODE_TAG = "risk/drift_episode"  # when the episode a drift retrain answers began
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
    episodes: bool = False,  # one retrain per episode (see the module's docstring)
) -> SensorDefinition:
    @sensor(
        name=name,
        job=job,
        minimum_interval_seconds=300,
        default_status=SENSOR_STATUS,
        description=f"Opens a {job.name} run when a watched {what} passes {act} (warns above "
        f"{warn}); at most one per {cooldown_s / 3600:g} h"
        + (
            f"; one per episode: re-armed once every watched {what} is back below {warn}."
            if episodes
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
            if episodes and not warned and cursor.pop("episode", None):
                context.update_cursor(json.dumps(cursor))  # the episode ended: re-armed
                return SkipReason(f"every watched {what} below {warn}: the episode ended")
            return SkipReason(
                f"no watched {what} above {act}" + (f"; warning: {warned}" if warned else "")
            )
        episode = cursor.get("episode") if episodes else None
        if episode and (answer := _answered(context, job.name, episode)):
            return SkipReason(
                f"{what} {over}: the episode that began {episode} was answered by {job.name} "
                f"run {answer.run_id[:8]}; re-armed once every watched {what} is below {warn}"
            )
        now = settings.now().timestamp()
        since = now - cursor.get("retrain_at", 0)
        if since < cooldown_s:
            return SkipReason(
                f"{what} {over}, but a retrain opened {since / 3600:.1f} h ago "
                f"(cooldown {cooldown_s / 3600:g} h)"
            )
        if context.instance.get_runs(RunsFilter(job_name=job.name, statuses=IN_FLIGHT), limit=1):
            return SkipReason(f"{what} {over}, and a {job.name} run is already in flight")
        cursor["retrain_at"] = now
        if episodes:  # a retry after a failed run keeps its episode
            cursor["episode"] = episode = episode or datetime.fromtimestamp(now, UTC).isoformat()
        context.update_cursor(json.dumps(cursor))
        named = ", ".join(f"{w}={v:.3f}" for w, v in sorted(over.items(), key=lambda kv: -kv[1]))
        as_of = metadata.get("as_of")
        return RunRequest(
            run_key=f"{trigger}:{event.storage_id}",
            tags={
                "risk/trigger": trigger,
                f"risk/{metric}": named,
                "risk/measured_as_of": str(as_of.value) if as_of else "",
                **({EPISODE_TAG: episode} if episodes else {}),
            },
        )

    return retrain


def _answered(context: SensorEvaluationContext, job_name: str, episode: str):
    """The newest successful run opened for ``episode``, if any."""
    runs = context.instance.get_runs(
        RunsFilter(
            job_name=job_name, tags={EPISODE_TAG: episode}, statuses=[DagsterRunStatus.SUCCESS]
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
        episodes=True,
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
