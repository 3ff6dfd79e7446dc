"""Checks the Dagster UI shows on the assets: freshness of the raw data, of the snapshots and of
the online store (by the data's own time, not the run's: re-materializing an old day does not
make anything fresh), each snapshot a run built against the one before it (blocking: the online
store does not load a snapshot that lost half its customers or whose nulls jumped), and the
quality of each newly registered model."""

import json
from datetime import date, datetime, timedelta

import pyarrow.compute as pc
import pyarrow.dataset as pads
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, asset_check

from assets.features.export import customer_features_daily, entity_features_daily
from assets.features.online import newest_as_of_date, online_customer_features
from assets.ingest.raw import raw_transactions
from assets.training.assets import risk_models
from featurestore.registry import load_feature_set
from resources.lakehouse import CUSTOMER_FEATURES, ENTITY_FEATURES, TRANSACTIONS, Lakehouse
from resources.online_store import OnlineStoreResource
from riskcore import settings
from riskcore.online_store import OnlineStoreError
from riskcore.registry import CHAMPION, ModelRegistry, model_name
from riskcore.targets import TARGETS
from riskcore.timestamps import as_of_time


def max_age() -> timedelta:
    """How old the newest data may be: the 02:00 daily batch plus slack (26 h by default)."""
    return timedelta(hours=settings.load().freshness_max_age_h)


def _age_result(newest: datetime | None, what: str) -> AssetCheckResult:
    if newest is None:
        return AssetCheckResult(passed=False, description=f"no {what} yet")
    age = settings.now() - newest
    return AssetCheckResult(
        passed=age <= max_age(),
        description=f"newest {what} is {age.total_seconds() / 3600:.1f} h old "
        f"(at most {max_age().total_seconds() / 3600:g} h)",
        metadata={"newest": newest.isoformat(), "age_hours": round(age.total_seconds() / 3600, 2)},
    )


@asset_check(
    asset=raw_transactions,
    name="fresh",
    description="The newest day of transactions ended at most ~26 h ago.",
)
def raw_transactions_fresh(lakehouse: Lakehouse) -> AssetCheckResult:
    days = lakehouse.partition_dates(TRANSACTIONS, "event_date")
    newest = as_of_time(days[-1] + timedelta(days=1)) if days else None
    return _age_result(newest, "day of transactions (its end)")


@asset_check(
    asset=customer_features_daily,
    name="fresh",
    description="The newest snapshot's as_of is at most ~26 h old.",
)
def customer_features_fresh(lakehouse: Lakehouse) -> AssetCheckResult:
    newest = newest_as_of_date(lakehouse)
    return _age_result(as_of_time(newest) if newest else None, "snapshot as_of")


def _entity_fresh(export) -> object:
    entity = export.key.path[-1].removesuffix("_features_daily")

    @asset_check(
        asset=export,
        name="fresh",
        description=f"The newest {entity} snapshot's as_of is at most ~26 h old.",
    )
    def fresh(lakehouse: Lakehouse) -> AssetCheckResult:
        days = lakehouse.partition_dates(ENTITY_FEATURES[entity], "as_of_date")
        return _age_result(as_of_time(days[-1]) if days else None, f"{entity} snapshot as_of")

    return fresh


entity_features_fresh = tuple(_entity_fresh(export) for export in entity_features_daily)


@asset_check(
    asset=online_customer_features,
    name="fresh",
    description="The serving generation's as_of and write time are at most ~26 h "
    "old, and it is not past its TTL.",
)
def online_store_fresh(online_store: OnlineStoreResource) -> AssetCheckResult:
    try:
        generation = online_store.store(load_feature_set().version).current_generation(fresh=True)
    except OnlineStoreError as exc:
        return AssetCheckResult(passed=False, description=str(exc))
    if generation is None or generation.expired:
        state = "expired" if generation else "no generation (Redis restarted empty?)"
        return AssetCheckResult(passed=False, description=f"online store: {state}")
    by_as_of = _age_result(generation.as_of, "serving snapshot as_of")
    by_write = _age_result(generation.written_at, "online store write")
    return AssetCheckResult(
        passed=by_as_of.passed and by_write.passed,
        description=f"{by_as_of.description}; {by_write.description}",
        metadata={
            "generation": generation.id,
            "as_of": generation.as_of.isoformat(),
            "written_at": generation.written_at.isoformat(),
            "as_of_age_hours": by_as_of.metadata["age_hours"].value,
            "write_age_hours": by_write.metadata["age_hours"].value,
        },
    )


@asset_check(
    asset=customer_features_daily,
    name="consistent_with_previous",
    blocking=True,
    description="Each snapshot the run built (or re-built) has at least half the customers of "
    "the snapshot before it and no feature's null share grew by more than 20 points against "
    "it (blocking: nothing downstream, the online store included, uses a snapshot that fails). "
    "Run alone, without a partition, it checks the newest snapshot.",
)
def snapshot_consistent(
    context: AssetCheckExecutionContext, lakehouse: Lakehouse
) -> AssetCheckResult:
    return snapshots_consistent(lakehouse, built_as_of_dates(context))


def built_as_of_dates(context: AssetCheckExecutionContext) -> list[date] | None:
    """The as_of dates of the snapshots the check's run built (partition D built as_of D + 1);
    None when the run has no partition (the check run alone)."""
    run = context.op_execution_context
    if not (run.has_partition_key or run.has_partition_key_range):
        return None
    window = run.partition_time_window
    first, end = window.start.date(), window.end.date()
    return [first + timedelta(days=i + 1) for i in range((end - first).days)]


def snapshots_consistent(lakehouse: Lakehouse, built: list[date] | None) -> AssetCheckResult:
    """Compare each snapshot in ``built`` (as_of dates; None: the newest) with the snapshot
    before it in the table (the nearest earlier as_of_date), not with the newest ones: a re-run
    of an old day is held to its own predecessor."""
    days = lakehouse.partition_dates(CUSTOMER_FEATURES, "as_of_date")
    built = days[-1:] if built is None else [d for d in built if d in set(days)]
    pairs = [(d, max((p for p in days if p < d), default=None)) for d in built]
    pairs = [(d, p) for d, p in pairs if p is not None]
    if not pairs:
        return AssetCheckResult(
            passed=True, description="no snapshot built with one before it: nothing to compare"
        )
    names = [c.name for c in load_feature_set().features]
    snapshots = lakehouse.dataset(CUSTOMER_FEATURES)  # once: it lists every file of the table
    shares: dict[date, dict] = {}

    def of(day: date) -> dict:
        if day not in shares:
            shares[day] = _null_shares(snapshots, names, day)
        return shares[day]

    problems = []
    for day, before in pairs:
        now, then = of(day), of(before)
        if now["rows"] < 0.5 * then["rows"]:
            problems.append(f"{day}: {now['rows']} rows against {then['rows']} on {before}")
        problems += [
            f"{day}: {n}: null share {then[n]:.0%} -> {now[n]:.0%} (against {before})"
            for n in names
            if now[n] - then[n] > 0.2
        ]
    day, before = pairs[-1]
    newest, previous = of(day), of(before)
    rows_ratio = newest["rows"] / max(previous["rows"], 1)
    compared = ", ".join(f"{d} with {p}" for d, p in pairs)
    return AssetCheckResult(
        passed=not problems,
        description="; ".join(problems) or f"consistent: {compared}",
        metadata={
            "as_of_date": str(day),
            "compared_with": str(before),
            "snapshots_compared": len(pairs),
            "rows": newest["rows"],
            "rows_before": previous["rows"],
            "rows_ratio": round(rows_ratio, 4),
            **{f"null_share/{n}": round(newest[n], 4) for n in names},
        },
    )


def _null_shares(snapshots: pads.Dataset, names: list[str], as_of_date: date) -> dict:
    """Rows and each feature's null share in one snapshot, a batch at a time (flat memory)."""
    scanner = snapshots.scanner(columns=names, filter=pc.field("as_of_date") == as_of_date)
    rows, nulls = 0, dict.fromkeys(names, 0)
    for batch in scanner.to_batches():
        rows += batch.num_rows
        for n in names:
            nulls[n] += batch.column(n).null_count
    return {"rows": rows, **{n: nulls[n] / max(rows, 1) for n in names}}


@asset_check(
    asset=risk_models,
    name="model_quality",
    description="Each target's newest model version: behavioural test AUC above its "
    "floor, and no feature the champion used has lost all its importance.",
)
def model_quality() -> AssetCheckResult:
    floors = {
        "fraud": settings.load().min_auc_fraud,
        "default": settings.load().min_auc_default,
    }
    problems, metadata = [], {}
    for target in TARGETS:
        name = model_name(target)
        found = _newest_and_champion(name)
        if found is None:
            problems.append(f"{name}: no registered version")
            continue
        (version, auc, importance), champion = found
        metadata[f"{target}_version"], metadata[f"{target}_auc"] = version, auc
        if auc < floors[target]:
            problems.append(
                f"{model_name(target)} v{version}: test AUC {auc:.3f} < {floors[target]}"
            )
        if champion is not None and champion[0] != version:
            lost = sorted(
                n for n, gain in champion[2].items() if gain > 0 and importance.get(n, 0.0) == 0
            )
            if lost:
                problems.append(
                    f"{name} v{version}: no importance left for {lost} "
                    f"(champion v{champion[0]} used them)"
                )
    return AssetCheckResult(
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        description="; ".join(problems) or "every new model clears its floor",
        metadata=metadata,
    )


def _newest_and_champion(name: str):
    """((version, behavioural test AUC, importance), champion's same or None), from MLflow."""
    registry = ModelRegistry.from_settings()

    def describe(version) -> tuple[str, float, dict]:
        auc = registry.run_metrics(version.run_id)["behavioural.roc_auc"]
        path = registry.artifacts(version.run_id, "evaluation/importance_behavioural.json")
        return str(version.version), float(auc), json.loads(path.read_text())

    versions = registry.versions(name)
    if not versions:
        return None
    champion = registry.version(name, CHAMPION)
    return describe(versions[-1]), None if champion is None else describe(champion)
