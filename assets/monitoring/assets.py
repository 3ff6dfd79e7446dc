"""Monitoring in the asset graph: PSI drift of every snapshot feature and of the live scores,
recorded as metadata (the Dagster UI plots each ``psi/<feature>`` over time) with evidently's
HTML report beside it; ``sensors/drift.py`` turns it into retraining."""

import contextlib
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from assets.features.export import customer_features_daily
from assets.ingest.raw import raw_labels, run_as_of_date
from assets.monitoring.canary import CanaryLimits, compare, markdown
from assets.monitoring.decision_log import read_decisions
from assets.monitoring.drift import (
    bin_labels,
    champion_references,
    evidently_report,
    like_with_like,
    snapshot_matrix,
    snapshot_psi,
)
from assets.monitoring.performance import (
    compare_on_served_rows,
    labelled_decisions,
    weekly_performance,
)
from assets.names import (
    AUC_DROP,
    CANARY_CHECK,
    DRIFT,
    KEY_FEATURES,
    MONITORING,
    PERFORMANCE,
    PSI,
    REGISTRY_POOL,
    ROLLOUT,
    WAREHOUSE_POOL,
    metric_key,
)
from assets.partitions import daily_partitions, monthly_batches
from featurestore.registry import load_feature_set
from resources.lakehouse import LABELS, REALIZED_PERFORMANCE, Lakehouse
from riskcore import settings
from riskcore.model_spec import KINDS
from riskcore.psi import Reference, psi
from riskcore.registry import ModelRegistry, model_name
from riskcore.targets import TARGETS, Thresholds
from riskcore.timestamps import as_of_time


class DriftConfig(Config):
    warn_psi: float = 0.1  # listed as drifting in the metadata; the sensor acts above 0.2
    score_window_days: int = 7  # live scores of this many days before the as_of
    report_rows: int = 50_000  # rows per side in evidently's report (a sample)


@asset(
    key=DRIFT,
    deps=[customer_features_daily],
    partitions_def=daily_partitions,
    backfill_policy=monthly_batches,
    group_name=MONITORING,
    pool=WAREHOUSE_POOL,
    kinds={"evidently"},
    description="PSI of every snapshot feature against the snapshot the fraud champion was "
    "trained on (one row per customer); of the live scores against its test-week scores and of "
    "the served input vectors against its training rows (one row per transaction); evidently's "
    "HTML drift report of the newest snapshot.",
)
def feature_drift(
    context: AssetExecutionContext, config: DriftConfig, lakehouse: Lakehouse
) -> MaterializeResult:
    as_of_date = run_as_of_date(context)
    feature_set = load_feature_set()
    references = champion_references(settings.load().tracking_uri())
    skipped = (
        "no champion yet: drift is measured once a model is trained"
        if references is None
        else f"champion {references.model} was logged without a snapshot reference: retrain it"
        if references.snapshot is None
        else f"champion {references.model} reads {references.snapshot['feature_set_version']}, "
        f"the registry is now {feature_set.version}: retrain it"
        if references.snapshot["feature_set_version"] != feature_set.version
        else None
    )
    if skipped:
        context.log.info(skipped)
        return MaterializeResult(metadata={"as_of": as_of_date.isoformat(), "skipped": skipped})
    reference = references.snapshot
    reference_as_of = date.fromisoformat(reference["as_of_date"])
    snapshot = snapshot_matrix(lakehouse, feature_set, as_of_date)
    current = like_with_like(feature_set, snapshot, reference_as_of, as_of_date)
    psis = snapshot_psi(reference, feature_set, current)
    psis |= _live_psi(lakehouse, references, as_of_date, config.score_window_days)
    metadata = {}
    try:
        path, theirs = _report(
            lakehouse, feature_set, reference, current, as_of_date, config.report_rows
        )
        url = f"{settings.load().reports_url.rstrip('/')}/{path.relative_to(_reports_dir())}"
        metadata |= {
            "evidently_report": MetadataValue.path(str(path)),
            "evidently_report_url": MetadataValue.url(url),
            "evidently_agrees": _agreement(psis, theirs),
        }
    except Exception as exc:  # the report is for people; the PSI above is what acts
        context.log.warning(f"evidently report not written: {exc!r}")
        theirs = {}
        metadata["evidently_report"] = f"not written: {exc!r}"
    # The headline is what the sensor and the report judge: the snapshot's features and the
    # score. Served input vectors (a week of purchases against the training rows, calendar
    # fields included) are shown apart: they explain, they do not retrain.
    headline = {k: v for k, v in psis.items() if not k.startswith(SERVED)}
    served = {k: v for k, v in psis.items() if k.startswith(SERVED)}
    drifting = sorted(((v, k) for k, v in headline.items() if v > config.warn_psi), reverse=True)
    return MaterializeResult(
        metadata={
            "as_of": as_of_date.isoformat(),
            "reference_as_of": reference["as_of_date"],
            "champion": references.model,
            "max_psi": max(headline.values()),
            "max_served_psi": max(served.values(), default=0.0),
            "drifting": MetadataValue.md(
                _table(drifting, theirs) or f"none above {config.warn_psi}"
            ),
            **metadata,
            **{metric_key(PSI, name): round(value, 6) for name, value in psis.items()},
        }
    )


SERVED = "served/"  # PSI of a served input vector, against the champion's training rows


def _side(value: float) -> int:
    """Which side of the warning (0.1) and action (0.2) thresholds a PSI falls on."""
    return int(value > 0.1) + int(value > 0.2)


def _agreement(ours: dict[str, float], theirs: dict[str, float]) -> str:
    apart = [
        f"{name} {ours[name]:.3f} vs {value:.3f}"
        for name, value in theirs.items()
        if name in ours and _side(ours[name]) != _side(value)
    ]
    if apart:
        return "evidently falls on another side of 0.1/0.2 for: " + "; ".join(apart)
    return f"yes: {len(theirs)} features on the same side of 0.1 and 0.2 (same bins)"


def _table(drifting: list[tuple[float, str]], theirs: dict[str, float]) -> str:
    """What drifts, for people: our PSI, evidently's on the same bins, and whether the retrain
    sensor acts on the feature (a key feature) or only lists it."""

    def row(value: float, name: str) -> str:
        evidently = f"{theirs[name]:.3f}" if name in theirs else "-"
        acts = "acts above 0.2" if name in KEY_FEATURES else "listed"
        return f"| {name} | {value:.3f} | {evidently} | {acts} |"

    rows = "\n".join(row(value, name) for value, name in drifting)
    header = "| feature | PSI | evidently's PSI | retrain sensor |\n|---|---|---|---|\n"
    return header + rows if drifting else ""


def _live_psi(lakehouse, references, as_of_date, window_days: int) -> dict[str, float]:
    """The champion's behavioural decisions on purchases of the ``window_days`` before the
    as_of (like with like): their scores against its test-week scores (``score``) and their
    input vectors, one row per transaction, against its training rows (``served/<input>``)."""
    import pyarrow.compute as pc

    start, end = as_of_time(as_of_date - timedelta(days=window_days)), as_of_time(as_of_date)
    rows = read_decisions(
        lakehouse,
        start,
        end,
        ["fraud_score", *references.inputs],
        (pc.field("fraud_model") == references.model) & (pc.field("model_kind") == "behavioural"),
    )
    if rows is None or not rows.num_rows:
        return {}
    inputs = [n for n in references.inputs if n in rows.column_names]

    def values(name: str) -> np.ndarray:
        return rows[name].to_numpy(zero_copy_only=False).astype(float)

    out = {"score": psi(Reference.from_dict(references.test_score), values("fraud_score"))}
    for name in inputs:
        out[f"{SERVED}{name}"] = psi(Reference.from_dict(references.inputs[name]), values(name))
    return out


def _reports_dir() -> Path:
    return settings.load().data_dir / "reports"


def _report(lakehouse, feature_set, reference: dict, current: np.ndarray, as_of_date, rows: int):
    """evidently's HTML drift report: a sample of the reference snapshot against one of the
    current (ages like with like), each feature binned by the reference's PSI bins, so its
    PSI is ours; reports older than RISK_REPORT_RETENTION_DAYS are removed."""
    import pandas as pd

    names = [c.name for c in feature_set.features]
    past = snapshot_matrix(lakehouse, feature_set, date.fromisoformat(reference["as_of_date"]))
    if not len(past):
        raise ValueError(
            f"the champion's reference snapshot (as_of {reference['as_of_date']}) is not in "
            "this lakehouse: the model was trained on another one, or the snapshot was removed"
        )
    rng = np.random.default_rng(0)

    def sample(matrix: np.ndarray) -> pd.DataFrame:
        picked = matrix[rng.permutation(len(matrix))[:rows]].astype(np.float64)
        return pd.DataFrame(
            {
                name: bin_labels(picked[:, i], reference["features"][name]["edges"])
                for i, name in enumerate(names)
                if name in reference["features"]
            }
        )

    folder = _reports_dir() / "feature_drift"
    note = (
        f"Snapshot as_of {as_of_date} against the champion's reference snapshot as_of "
        f"{reference['as_of_date']}, {rows:,} customers a side. Each feature is binned by the "
        "reference's deciles (and a null bin), the bins the PSI in Dagster and the retrain "
        "sensor use; ages (days_since_first_txn) are shifted by the days between the two "
        "snapshots."
    )
    report = evidently_report(
        sample(past), sample(current), names, folder / f"{as_of_date}.html", note
    )
    oldest = as_of_date - timedelta(days=settings.load().report_retention_days)
    for old in folder.glob("*.html"):
        with contextlib.suppress(ValueError):
            if date.fromisoformat(old.stem) < oldest:
                old.unlink()
    return report


class PerformanceConfig(Config):
    lookback_weeks: int = 26  # decisions on purchases of this many weeks before the as_of
    min_rows: int = 300  # matured behavioural decisions needed to judge a model ...
    min_bad: int = 10  # ... and bad ones among them
    rollback_margin: float = 0.01  # realized AUC a champion may trail its predecessor by
    model_p95_sla_ms: float = 10.0  # the models' own inference time (not the lookup), p95 ...
    latency_window_days: int = 7  # ... over decisions on this many days before the as_of
    rollback: bool = True  # False: report what would be rolled back, move no alias


@asset(
    key=PERFORMANCE,
    deps=[raw_labels],
    partitions_def=daily_partitions,
    backfill_policy=monthly_batches,
    group_name=MONITORING,
    pool=WAREHOUSE_POOL,
    kinds={"delta", "mlflow"},
    description="The inference log's decisions joined with the labels known by the as_of: per "
    "week of matured decisions, realized AUC, precision at the decline threshold and bad rate "
    "by decision, for champion and shadow. Rolls the champion back (its registry alias) when it "
    "does worse than the version it replaced on the same decisions, or breaks its latency SLA.",
)
def realized_performance(
    context: AssetExecutionContext, config: PerformanceConfig, lakehouse: Lakehouse
) -> MaterializeResult:
    import polars as pl
    import pyarrow.compute as pc

    as_of_date = run_as_of_date(context)
    cutoff = as_of_time(as_of_date)
    log = read_decisions(lakehouse, cutoff - timedelta(weeks=config.lookback_weeks), cutoff)
    labels = lakehouse.dataset(LABELS)
    if log is None or not log.num_rows or labels is None:
        skipped = "no decisions logged before the as_of" if labels else "no labels yet"
        return MaterializeResult(metadata={"as_of": as_of_date.isoformat(), "skipped": skipped})
    log = pl.from_arrow(log)
    labels = pl.from_arrow(
        labels.to_table(
            columns=["transaction_id", "label", "label_ts"],
            filter=pc.field("label_date") <= as_of_date,
        )
    )
    overrides = Thresholds.from_settings(settings.load())
    metadata: dict = {"as_of": as_of_date.isoformat()}
    weekly = []
    for target in TARGETS:
        # A decision counts once its label had time to arrive, as in training (one setting).
        maturity = getattr(settings.load(), f"{target}_maturity_days")
        decisions = labelled_decisions(log, labels, target, cutoff, maturity)
        table = weekly_performance(decisions, target, _decline_threshold(target, overrides))
        weekly.append(table)
        judged = _judge_champion(config, target, log, decisions, table, cutoff)
        if judged[f"rollback/{target}"].startswith(("rolled back", "would roll back")):
            context.log.warning(f"{model_name(target)}: {judged[f'rollback/{target}']}")
        metadata |= judged
    weeks = pl.concat(weekly)
    version = lakehouse.replace_day(
        REALIZED_PERFORMANCE, weeks.to_arrow(), "as_of_date", as_of_date
    )
    served = weeks.filter(pl.col("role") == "served").tail(16)
    return MaterializeResult(
        metadata={
            **metadata,
            "matured_decisions": int(weeks["rows"].sum()),
            "weekly": MetadataValue.md(
                _markdown(served) if served.height else "no matured weeks yet"
            ),
            "table_uri": MetadataValue.path(lakehouse.uri(REALIZED_PERFORMANCE)),
            "delta_version": version,
        }
    )


def _decline_threshold(target: str, overrides: Thresholds) -> dict[str, float]:
    """The decline threshold each of the champion's models decides with (its own, under any
    override), by model kind."""
    registry, name = ModelRegistry.from_settings(), model_name(target)
    version = registry.alias_version(name)
    chosen = (registry.load_bundle(name, version).thresholds if version else None) or {}
    return {kind: overrides.resolve(target, chosen.get(kind)).decline for kind in KINDS}


def _markdown(weeks) -> str:
    columns = [
        "week",
        "target",
        "model",
        "model_kind",
        "rows",
        "bad",
        "auc",
        "precision_at_decline",
        "bad_rate_approve",
        "bad_rate_decline",
    ]
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else "-" if v is None else str(v)  # noqa: E731
    rows = [" | ".join(cell(r[c]) for c in columns) for r in weeks.iter_rows(named=True)]
    return "\n".join([" | ".join(columns), " | ".join("---" for _ in columns), *rows])


def _judge_champion(config: PerformanceConfig, target, log, decisions, weekly, cutoff) -> dict:
    """The champion's realized AUC on its newest judged week (and its drop from the test AUC,
    which the performance sensor watches), its models' latency p95, and the rollback verdict:
    worse than the version it replaced on the same matured decisions, or over the SLA while
    the version it replaced was not."""
    import polars as pl

    name, registry = model_name(target), ModelRegistry.from_settings()
    champion_now = registry.previous_champion(name)
    if champion_now is None:
        return {f"rollback/{target}": "none"}
    version, previous = champion_now
    label = f"{name}/{version}"
    out: dict = {f"champion/{target}": label}
    own = weekly.filter(
        (pl.col("role") == "served")
        & (pl.col("model") == label)
        & (pl.col("model_kind") == "behavioural")
        & pl.col("auc").is_not_null()
        & (pl.col("rows") >= config.min_rows)
        & (pl.col("bad") >= config.min_bad)
    )
    if own.height:
        newest = own.row(-1, named=True)
        run = registry.model_version(name, version).run_id
        test_auc = registry.run_metrics(run)["behavioural.roc_auc"]
        out |= {
            f"auc/{target}": newest["auc"],
            f"auc_test/{target}": test_auc,
            metric_key(AUC_DROP, target): test_auc - newest["auc"],
            f"auc_week/{target}": newest["week"].date().isoformat(),
        }

    def p95(model: str, since) -> float | None:
        ms = log.filter((pl.col(f"{target}_model") == model) & (pl.col("event_ts") >= since))
        return float(ms["inference_ms"].quantile(0.95)) if ms.height else None

    latency = p95(label, cutoff - timedelta(days=config.latency_window_days))
    if latency is not None:
        out[f"p95_inference_ms/{target}"] = latency
    reason = None
    if previous is None:
        out[f"rollback/{target}"] = "none (the first champion)"
        return out
    before = p95(f"{name}/{previous}", log["event_ts"].min())
    sla = config.model_p95_sla_ms
    if latency is not None and latency > sla and (before is None or before <= sla):
        reason = (
            f"model inference p95 {latency:.2f} ms > SLA {sla:g} ms over "
            f"{config.latency_window_days} days (v{previous}: "
            f"{'not served' if before is None else f'{before:.2f} ms'})"
        )
    else:
        champion = registry.load_bundle(name, version).behavioural
        replaced = registry.load_bundle(name, previous).behavioural
        seen = compare_on_served_rows(decisions, target, label, champion, replaced)
        auc = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        bound = "-" if seen.gap_bound is None else f"{seen.gap_bound:+.4f}"
        out[f"compared/{target}"] = seen.problem or (
            f"realized AUC v{version} {auc(seen.champion_auc)}, v{previous} "
            f"{auc(seen.previous_auc)} on {seen.rows} matured decisions ({seen.bad} bad, "
            f"{seen.weeks} weeks); the gap's 99% bound {bound}"
        )
        enough = seen.rows >= config.min_rows and seen.bad >= config.min_bad
        # Worse by more than the margin, and surely so: with a dozen bad outcomes a realized
        # AUC moves by a few hundredths from noise alone (DeLong's paired bound, 99%).
        if (
            seen.problem is None
            and enough
            and None not in (seen.champion_auc, seen.previous_auc, seen.gap_bound)
            and seen.champion_auc < seen.previous_auc - config.rollback_margin
            and seen.gap_bound < -config.rollback_margin
        ):
            reason = (
                f"realized AUC {seen.champion_auc:.4f} < v{previous}'s {seen.previous_auc:.4f}"
                f" - {config.rollback_margin} on the same {seen.rows} matured decisions "
                f"({seen.bad} bad, {seen.weeks} weeks; the gap's 99% bound {bound})"
            )
    if reason and config.rollback:
        if registry.roll_back(name, reason, judged=version) is None:
            reason = f"not rolled back: v{version} is no longer champion ({reason})"
        else:
            reason = f"rolled back v{version} -> v{previous}: {reason}"
    elif reason:
        reason = f"would roll back v{version} -> v{previous} (rollback off): {reason}"
    out[f"rollback/{target}"] = reason or "none"
    return out


def _labels_since(lakehouse: Lakehouse, day: date):
    """The labels that arrived from ``day`` on (a canary's purchases' labels come after it
    started), as polars: transaction_id, label, label_ts."""
    import polars as pl
    import pyarrow.compute as pc

    labels = lakehouse.dataset(LABELS)
    if labels is None:
        schema = {"transaction_id": pl.Utf8, "label": pl.Utf8, "label_ts": pl.Datetime("us", "UTC")}
        return pl.DataFrame(schema=schema)
    columns = ["transaction_id", "label", "label_ts"]
    return pl.from_arrow(labels.to_table(columns=columns, filter=pc.field("label_date") >= day))


class CanaryConfig(Config):
    act: bool = True  # False: report the verdicts, move no alias


CANARY_LOG_COLUMNS = [
    "transaction_id",
    "event_ts",
    "scored_at",
    "decision",
    "holdout",
    *(
        f"{target}_{column}"
        for target in TARGETS
        for column in ("score", "model", "role", "decision")
    ),
]


@asset(
    key=CANARY_CHECK,
    group_name=ROLLOUT,
    pool=REGISTRY_POOL,
    kinds={"mlflow"},
    description="Each running canary against the champion over the same period (decline and "
    "review rates, score PSI, bad rate among approved on the labels so far): halts it when a "
    "limit is crossed (share 0, the reason on the MLflow version), promotes it to full after "
    "a clean period. Run by the `canary_check` sensor while a canary runs.",
)
def canary_comparison(
    context: AssetExecutionContext, config: CanaryConfig, lakehouse: Lakehouse
) -> MaterializeResult:
    import polars as pl

    env, registry = settings.load(), ModelRegistry.from_settings()
    now, limits = env.now(), CanaryLimits.from_settings(env)
    metadata: dict = {"now": now.isoformat()}
    comparisons = []
    for target in TARGETS:
        name = model_name(target)
        running = registry.canary(name)
        if running is None:
            metadata[f"canary/{target}"] = "none"
            continue
        version, share, since = running
        if not since:  # an alias set by hand, without the gate's tags
            metadata[f"canary/{target}"] = f"{name}/{version}: no canary_since tag, not judged"
            continue
        started = datetime.fromisoformat(since)
        log = read_decisions(
            lakehouse, started, now + timedelta(seconds=1), CANARY_LOG_COLUMNS, by="scored_at"
        )
        if log is None or f"{target}_role" not in log.column_names:
            metadata[f"canary/{target}"] = f"{name}/{version} on {share:.0%}: no decisions yet"
            continue
        known = _labels_since(lakehouse, started.date())
        judged = compare(pl.from_arrow(log), known, target, started, now, limits)
        comparisons.append(judged)
        state = f"{name}/{version} on {share:.0%} since {since}: {judged.verdict}: {judged.reason}"
        # Acting on the version judged only: a newer canary started meanwhile is left alone.
        if judged.verdict == "halt" and config.act:
            if registry.end_canary(name, judged.reason, version=version):
                state = f"halted {name}/{version}: {judged.reason}"
                context.log.warning(state)
        elif judged.verdict == "promote" and config.act:
            if registry.promote_canary(name, version, judged.reason):
                state = f"promoted {name}/{version} to full: {judged.reason}"
                context.log.info(state)
        metadata |= {
            f"canary/{target}": state,
            f"canary_share/{target}": judged.traffic_share,
            f"canary_decisions/{target}": judged.canary.decisions,
        }
        if judged.score_psi is not None:
            metadata[f"canary_score_psi/{target}"] = judged.score_psi
    if comparisons:
        metadata["comparison"] = MetadataValue.md(markdown(comparisons))
    return MaterializeResult(metadata=metadata)
