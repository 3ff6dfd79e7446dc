"""While a canary runs, compare it with the champion every RISK_CANARY_CHECK_MINUTES: a run of
`canary_check` (``rollout/canary_comparison``), which halts the canary when a limit is
crossed or promotes it to full after its clean period (docs/architecture.md#rollout)."""

from __future__ import annotations

from dagster import RunRequest, SensorEvaluationContext, SkipReason, define_asset_job, sensor

from assets.monitoring.assets import canary_comparison
from riskcore import settings
from riskcore.registry import MODEL_NAMES, ModelRegistry
from sensors.status import SENSOR_STATUS

canary_check_job = define_asset_job(
    "canary_check",
    selection=[canary_comparison],
    description="Compares each running canary with the champion; halts or promotes it.",
)


@sensor(
    job=canary_check_job,
    minimum_interval_seconds=int(settings.load().canary_check_minutes * 60),
    default_status=SENSOR_STATUS,
    description="While a canary runs (a challenger that passed the gate, acting on a share of "
    "customers), compares it with the champion; the run halts it on a crossed limit or "
    "promotes it to full after its clean period.",
)
def canary_watch(context: SensorEvaluationContext):
    registry = ModelRegistry.from_settings()
    running = {name: registry.canary(name) for name in MODEL_NAMES.values()}
    running = {name: found for name, found in running.items() if found is not None}
    if not running:
        return SkipReason("no canary running")
    now = settings.now()
    state = ", ".join(f"{name}/{found[0]} on {found[1]:.0%}" for name, found in running.items())
    return RunRequest(
        run_key=f"canary:{state}:{now:%Y-%m-%dT%H:%M}",
        tags={"risk/reason": f"canary check: {state}"},
    )
