"""Checks the Dagster UI shows on the assets: freshness of the raw data, of the snapshots and of
the online store (by the data's own time, not the run's: re-materializing an old day does not
make anything fresh), the newest snapshot against the one before it (blocking: the online store
does not load a snapshot that lost half its customers or whose nulls jumped), and the quality of
each newly registered model."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pyarrow.compute as pc
from dagster import AssetCheckResult, AssetCheckSeverity, asset_check

from assets.features.export import customer_features_daily
from assets.features.online import newest_as_of_date, online_customer_features
from assets.features.registry import load_feature_set
from assets.ingest.raw import raw_transactions
from assets.partitions import as_of_time
from assets.training.assets import risk_models
from resources.lakehouse import CUSTOMER_FEATURES, TRANSACTIONS, Lakehouse
from resources.online_store import OnlineStoreResource
from riskcore import settings
from riskcore.online_store import OnlineStoreError
from riskcore.registry import CHAMPION, ModelRegistry, model_name
from riskcore.targets import TARGETS


def max_age() -> timedelta:
    """How old the newest data may be: the 02:00 daily batch plus slack (26 h by default)."""
    return timedelta(hours=settings.load().freshness_max_age_h)


def _age_result(newest: datetime | None, what: str) -> AssetCheckResult:
    if newest is None:
        return AssetCheckResult(passed=False, description=f"no {what} yet")
    age = settings.load().now() - newest
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
    description="The newest snapshot has at least half the customers of the one before and "
    "no feature's null share grew by more than 20 points (blocking: nothing downstream, the "
    "online store included, uses a snapshot that fails).",
)
def snapshot_consistent(lakehouse: Lakehouse) -> AssetCheckResult:
    days = lakehouse.partition_dates(CUSTOMER_FEATURES, "as_of_date")
    if len(days) < 2:
        return AssetCheckResult(
            passed=True, description="fewer than two snapshots: nothing to compare"
        )
    feature_set = load_feature_set()
    names = [c.name for c in feature_set.features]
    newest, previous = (_null_shares(lakehouse, names, d) for d in (days[-1], days[-2]))
    rows_ratio = newest["rows"] / max(previous["rows"], 1)
    jumps = {n: newest[n] - previous[n] for n in names if newest[n] - previous[n] > 0.2}
    problems = (
        [f"{newest['rows']} rows against {previous['rows']} the day before"]
        if rows_ratio < 0.5
        else []
    ) + [f"{n}: null share {previous[n]:.0%} -> {newest[n]:.0%}" for n in jumps]
    return AssetCheckResult(
        passed=not problems,
        description="; ".join(problems) or f"{days[-1]} consistent with {days[-2]}",
        metadata={
            "rows": newest["rows"],
            "rows_before": previous["rows"],
            "rows_ratio": round(rows_ratio, 4),
            **{f"null_share/{n}": round(newest[n], 4) for n in names},
        },
    )


def _null_shares(lakehouse: Lakehouse, names: list[str], as_of_date: date) -> dict:
    table = lakehouse.dataset(CUSTOMER_FEATURES).to_table(
        columns=names, filter=pc.field("as_of_date") == as_of_date
    )
    rows = max(table.num_rows, 1)
    return {"rows": table.num_rows, **{n: table[n].null_count / rows for n in names}}


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
