"""Monitoring in the asset graph: PSI drift of every snapshot feature and of the live scores,
recorded as metadata (the Dagster UI plots each ``psi/<feature>`` over time) with evidently's
HTML report beside it; ``sensors/drift.py`` turns it into retraining."""

from datetime import date, timedelta

import numpy as np
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from assets.features.export import customer_features_daily
from assets.features.registry import load_feature_set
from assets.ingest.raw import partition_days
from assets.monitoring.drift import (
    champion_references,
    evidently_report,
    snapshot_matrix,
    snapshot_psi,
)
from assets.monitoring.psi import Reference, psi
from assets.partitions import as_of_time, daily_partitions, monthly_batches
from resources import settings
from resources.lakehouse import Lakehouse
from serving.environment import inference_log_uri


class DriftConfig(Config):
    warn_psi: float = 0.1  # listed as drifting in the metadata; the sensor acts above 0.2
    score_window_days: int = 7  # live scores of this many days before the as_of
    report_rows: int = 50_000  # rows per side in evidently's report (a sample)


@asset(
    key=["monitoring", "feature_drift"],
    deps=[customer_features_daily],
    partitions_def=daily_partitions,
    backfill_policy=monthly_batches,
    group_name="monitoring",
    kinds={"evidently"},
    description="PSI of every snapshot feature against the snapshot the fraud champion was "
    "trained on (one row per customer); of the live scores against its test-week scores and of "
    "the served input vectors against its training rows (one row per transaction); evidently's "
    "HTML drift report of the newest snapshot.",
)
def feature_drift(
    context: AssetExecutionContext, config: DriftConfig, lakehouse: Lakehouse
) -> MaterializeResult:
    as_of_date = partition_days(context)[-1] + timedelta(days=1)
    feature_set = load_feature_set()
    references = champion_references(settings.mlflow_tracking_uri())
    skipped = (
        "no champion yet: drift is measured once a model is trained" if references is None
        else f"champion {references.model} was logged without a snapshot reference: retrain it"
        if references.snapshot is None
        else f"champion {references.model} reads {references.snapshot['feature_set_version']}, "
        f"the registry is now {feature_set.version}: retrain it"
        if references.snapshot["feature_set_version"] != feature_set.version
        else None
    )  # fmt: skip
    if skipped:
        context.log.info(skipped)
        return MaterializeResult(metadata={"as_of": as_of_date.isoformat(), "skipped": skipped})
    reference = references.snapshot
    current = snapshot_matrix(lakehouse, feature_set, as_of_date)
    psis = snapshot_psi(reference, feature_set, current)
    psis |= _live_psi(lakehouse, references, as_of_date, config.score_window_days)
    drifting = sorted(((v, k) for k, v in psis.items() if v > config.warn_psi), reverse=True)
    try:
        report = str(_report(lakehouse, feature_set, reference, current, as_of_date,
                             config.report_rows))  # fmt: skip
    except Exception as exc:  # the report is for people; the PSI above is what acts
        context.log.warning(f"evidently report not written: {exc!r}")
        report = f"not written: {exc!r}"
    return MaterializeResult(
        metadata={
            "as_of": as_of_date.isoformat(),
            "reference_as_of": reference["as_of_date"],
            "champion": references.model,
            "max_psi": max(psis.values()),
            "drifting": MetadataValue.md(_table(drifting) or f"none above {config.warn_psi}"),
            "evidently_report": MetadataValue.path(report),
            **{f"psi/{name}": round(value, 6) for name, value in psis.items()},
        }
    )


def _table(drifting: list[tuple[float, str]]) -> str:
    rows = "\n".join(f"| {name} | {value:.3f} |" for value, name in drifting)
    return f"| feature | PSI |\n|---|---|\n{rows}" if drifting else ""


def _live_psi(lakehouse, references, as_of_date, window_days: int) -> dict[str, float]:
    """The champion's behavioural decisions on purchases of the ``window_days`` before the
    as_of (like with like): their scores against its test-week scores (``score``) and their
    input vectors, one row per transaction, against its training rows (``served/<input>``)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    uri = inference_log_uri(lakehouse.root)  # where serving writes it
    try:
        log = DeltaTable(uri).to_pyarrow_dataset() if uri else None
    except TableNotFoundError:
        log = None
    if log is None:
        return {}
    start, end = as_of_time(as_of_date - timedelta(days=window_days)), as_of_time(as_of_date)
    at = lambda t: pa.scalar(t, pa.timestamp("us", "UTC"))  # noqa: E731
    inputs = [n for n in references.inputs if n in log.schema.names]
    rows = log.to_table(
        columns=["fraud_score", *inputs],
        filter=(pc.field("scored_date") >= start.date())  # scored after the purchase: prunes
        & (pc.field("event_ts") >= at(start)) & (pc.field("event_ts") < at(end))
        & (pc.field("fraud_model") == references.model)
        & (pc.field("model_kind") == "behavioural"),
    )  # fmt: skip
    if not rows.num_rows:
        return {}

    def values(name: str) -> np.ndarray:
        return rows[name].to_numpy(zero_copy_only=False).astype(float)

    out = {"score": psi(Reference.from_dict(references.test_score), values("fraud_score"))}
    for name in inputs:
        out[f"served/{name}"] = psi(Reference.from_dict(references.inputs[name]), values(name))
    return out


def _report(lakehouse, feature_set, reference: dict, current: np.ndarray, as_of_date, rows: int):
    """evidently's HTML drift report: a sample of the reference snapshot against the current."""
    import pandas as pd

    names = [c.name for c in feature_set.features]
    past = snapshot_matrix(lakehouse, feature_set, date.fromisoformat(reference["as_of_date"]))
    rng = np.random.default_rng(0)

    def sample(matrix: np.ndarray) -> pd.DataFrame:
        picked = matrix[rng.permutation(len(matrix))[:rows]].astype(np.float64)
        return pd.DataFrame(picked, columns=names)

    path = settings.data_dir() / "reports" / "feature_drift" / f"{as_of_date}.html"
    return evidently_report(sample(past), sample(current), names, path)
