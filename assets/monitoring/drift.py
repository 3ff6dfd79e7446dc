"""Drift, like with like (docs/architecture.md#drift): a snapshot against the snapshot the champion
was trained on (one row per customer, as serving decodes it), and the live scores of the
inference log against the champion's test-week scores. References travel with the model (MLflow
artifacts ``evaluation/reference_snapshot.json`` and ``evaluation/reference_behavioural.json``)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from resources.lakehouse import CUSTOMER_FEATURES, Lakehouse
from riskcore.codec import RecordCodec
from riskcore.feature_set import FeatureSet
from riskcore.psi import Reference, psi
from riskcore.registry import CHAMPION, ModelRegistry, model_name


def snapshot_matrix(lakehouse: Lakehouse, feature_set: FeatureSet, as_of_date: date) -> np.ndarray:
    """One snapshot partition's features as serving decodes them (float32, categorical codes)."""
    table = lakehouse.dataset(CUSTOMER_FEATURES).to_table(
        columns=[c.name for c in feature_set.features],
        filter=pc.field("as_of_date") == as_of_date,
    )
    return RecordCodec(feature_set).feature_matrix(table)


def snapshot_reference(lakehouse: Lakehouse, feature_set: FeatureSet, as_of_date: date) -> dict:
    """PSI references of every snapshot feature over one partition (logged with a model)."""
    matrix = snapshot_matrix(lakehouse, feature_set, as_of_date)
    return {
        "as_of_date": as_of_date.isoformat(),
        "feature_set_version": feature_set.version,
        "customers": len(matrix),
        "features": {
            c.name: Reference.of(matrix[:, i]).to_dict() for i, c in enumerate(feature_set.features)
        },
    }


def snapshot_psi(reference: dict, feature_set: FeatureSet, matrix: np.ndarray) -> dict[str, float]:
    """PSI of every snapshot feature of ``matrix`` against the reference snapshot."""
    return {
        c.name: psi(Reference.from_dict(reference["features"][c.name]), matrix[:, i])
        for i, c in enumerate(feature_set.features)
        if c.name in reference["features"]
    }


@dataclass
class ChampionReferences:
    model: str  # name/version
    snapshot: dict | None  # None: trained before snapshot references were logged
    test_score: dict  # the behavioural model's test-week scores
    inputs: dict  # the behavioural model's inputs over its training rows, by name


def champion_references(
    tracking_uri: str, name: str = model_name("fraud")
) -> ChampionReferences | None:
    """The references the champion was logged with; None when there is no champion yet."""
    registry = ModelRegistry(tracking_uri)
    champion = registry.version(name, CHAMPION)
    if champion is None:
        return None
    folder = registry.artifacts(champion.run_id, "evaluation")
    snapshot = folder / "reference_snapshot.json"
    behavioural = json.loads((folder / "reference_behavioural.json").read_text())
    return ChampionReferences(
        f"{name}/{champion.version}",
        json.loads(snapshot.read_text()) if snapshot.exists() else None,
        behavioural["test_score"],
        behavioural["features"],
    )


def like_with_like(
    feature_set: FeatureSet, matrix: np.ndarray, reference_as_of: date, as_of: date
) -> np.ndarray:
    """The snapshot as the reference would have seen it: an age (a feature that grows by a day
    a day, meta ``drift: age``) is shifted back by the days between the two snapshots, so its
    PSI measures a changed population, not the calendar."""
    shifted = matrix.astype(np.float64, copy=True)
    days = (as_of - reference_as_of).days
    for i, column in enumerate(feature_set.features):
        if column.grows_with_time:
            shifted[:, i] -= days
    return shifted


def bin_labels(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Each value's PSI bin (the reference's deciles, ``riskcore/psi.py``) as a readable label:
    given to evidently, its PSI is computed on the bins the sensor acts on."""
    bounds = [f"{e:.4g}" for e in edges]
    inner = [f"[{lo}, {hi})" for lo, hi in itertools.pairwise(bounds)]
    names = [f"< {bounds[0]}", *inner, f">= {bounds[-1]}"] if bounds else ["all"]
    labels = np.array([*names, "null"], dtype=object)
    index = np.searchsorted(np.asarray(edges, float), values, side="right")
    return labels[np.where(np.isnan(values), len(names), index)]


def evidently_psi(report_doc: dict) -> dict[str, float]:
    """Per column, the PSI evidently computed (from ``Snapshot.dict()``)."""
    return {
        m["config"]["column"]: float(m["value"])
        for m in report_doc["metrics"]
        if m["config"].get("type", "").endswith("ValueDrift")
    }


def evidently_report(
    reference, current, columns: list[str], path: Path, note: str = ""
) -> tuple[Path, dict[str, float]]:
    """evidently's data-drift report as HTML, for people to read, over the columns as given
    (the caller bins them: categorical columns); returns the path and evidently's PSI per
    column."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = [c for c in columns if reference[c].notna().any() and current[c].notna().any()]
    definition = DataDefinition(categorical_columns=columns)  # evidently refuses empty columns
    snapshot = Report([DataDriftPreset(method="psi", threshold=0.2)]).run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    if note:  # what the bins are, at the top of the page
        html = path.read_text()
        path.write_text(html.replace("<body>", f"<body><p style='margin:1em'>{note}</p>", 1))
    return path, evidently_psi(snapshot.dict())
