"""Alerts from what runs leave behind (Dagster's run-status sensors): a failed run; a check that
failed (a blocking one stops what is downstream; a freshness one means stale data or a stale
online store); a champion rolled back. Each finished run is read once."""

from __future__ import annotations

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    run_failure_sensor,
    run_status_sensor,
)

from assets.names import CANARY_CHECK, PERFORMANCE
from resources.alerts import AlertWebhook
from riskcore.registry import model_name
from riskcore.targets import TARGETS
from sensors.status import SENSOR_STATUS


def trouble_in_run(instance: DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """(kind, text) for every failed check, rollback and halted canary a run recorded."""
    found = []
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        if not evaluation.passed:
            check = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            kind = "stale" if evaluation.check_name == "fresh" else "check_failed"
            what = evaluation.description or "failed"
            found.append((kind, f"check {check} failed: {what}"))
    # A rollback (realized performance) and a halted canary (the canary check) change what
    # decides for customers without a person: both are told.
    acted = {
        PERFORMANCE: ("rollback/", "rolled back", "rollback"),
        CANARY_CHECK: ("canary/", "halted", "canary_halted"),
    }
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        materialization = record.dagster_event.event_specific_data.materialization
        if materialization.asset_key not in acted:
            continue
        prefix, verb, kind = acted[materialization.asset_key]
        for target in TARGETS:
            verdict = materialization.metadata.get(f"{prefix}{target}")
            if verdict is not None and str(verdict.value).startswith(verb):
                found.append((kind, f"{model_name(target)}: {verdict.value}"))
    return found


@run_failure_sensor(
    name="alert_on_run_failure",
    monitor_all_code_locations=False,
    default_status=SENSOR_STATUS,
    description="A failed run (a blocking check included) posts an alert to RISK_ALERT_WEBHOOK.",
)
def alert_on_run_failure(context: RunFailureSensorContext, alerts: AlertWebhook):
    run = context.dagster_run
    message = context.failure_event.message or "run failed"
    alerts.send(
        "run_failure",
        f"run {run.run_id[:8]} of {run.job_name} failed: {message}",
        run_id=run.run_id,
        job=run.job_name,
        partition=run.tags.get("dagster/partition", ""),
    )
    for kind, text in trouble_in_run(context.instance, run.run_id):
        alerts.send(kind, text, run_id=run.run_id, job=run.job_name)


@run_status_sensor(
    name="alert_on_trouble",
    run_status=DagsterRunStatus.SUCCESS,
    monitor_all_code_locations=False,
    default_status=SENSOR_STATUS,
    description="A run that succeeded but recorded a failed check (stale data, a stale online "
    "store), a rollback or a halted canary posts an alert to RISK_ALERT_WEBHOOK.",
)
def alert_on_trouble(context: RunStatusSensorContext, alerts: AlertWebhook):
    run = context.dagster_run
    for kind, text in trouble_in_run(context.instance, run.run_id):
        alerts.send(kind, text, run_id=run.run_id, job=run.job_name)
