"""Realized performance: the inference log's decisions joined with the labels known so far.

A decision counts once its label has had time to arrive (the target's maturity: 45 days for
fraud, 90 for BNPL default, as in training); a matured purchase without a label is good. Each
purchase counts once, at its first scoring (retries and replays decide nothing new). Per week
of decisions, per model (served or shadow) and kind: realized ROC AUC, precision at the
decline threshold, decline rate, and for served models the bad rate by decision.

Caveat: in production a declined purchase's outcome is censored (it never happened); the
synthetic source labels every purchase, so here the declined ones are measured too. What
production would see is reported beside it: ``auc_observed`` on the purchases that went ahead,
the random holdout's would-be declines weighted by 1 / the share held out (inverse propensity),
and ``bad_rate_behind_decline`` from the holdout (docs/architecture.md#thresholds).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import NormalDist

import numpy as np
import polars as pl
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from riskcore.model_bundle import ScoringModel

DECISIONS = ("approve", "review", "decline")
ROLES = {"served": "", "shadow": "shadow_"}  # column prefixes in the log


def realized_auc(bad: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC, or None when the rows hold one class only."""
    return float(roc_auc_score(bad, score)) if 0 < bad.sum() < len(bad) else None


def _delong_components(bad: np.ndarray, score: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """A score's AUC and its DeLong structural components over the bad and the good rows
    (Sun and Xu's fast algorithm: three rankings, ties halved)."""
    positives, negatives = score[bad], score[~bad]
    m, n = len(positives), len(negatives)
    ranks = rankdata(np.concatenate([positives, negatives]))
    auc = (ranks[:m].sum() - m * (m + 1) / 2) / (m * n)
    over_good = (ranks[:m] - rankdata(positives)) / n  # each bad row: share of good below it
    under_bad = 1 - (ranks[m:] - rankdata(negatives)) / m  # each good row: share of bad above
    return auc, over_good, under_bad


def auc_gap_bound(
    bad: np.ndarray, champion: np.ndarray, previous: np.ndarray, level: float = 0.99
) -> float | None:
    """The upper bound of a one-sided ``level`` confidence interval for the champion's realized
    AUC minus the previous version's on the same decisions (DeLong's paired variance). Below
    minus the rollback margin, the champion is worse beyond what the noise of a dozen bad
    outcomes explains. At 99%, not 95%: the check runs every day on overlapping weeks. Rows are
    taken as independent; bad purchases of one customer are not, so with few bad customers the
    bound is optimistic. None when the rows hold one class only."""
    bad = bad.astype(bool)
    if not 0 < bad.sum() < len(bad):
        return None
    auc_c, good_c, bad_c = _delong_components(bad, champion)
    auc_p, good_p, bad_p = _delong_components(bad, previous)
    over_good = (
        np.cov(np.stack([good_c, good_p])) / bad.sum() if bad.sum() > 1 else np.zeros((2, 2))
    )
    under_bad = np.cov(np.stack([bad_c, bad_p])) / (~bad).sum()
    covariance = over_good + under_bad
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    return float(auc_c - auc_p + NormalDist().inv_cdf(level) * np.sqrt(max(variance, 0.0)))


def labelled_decisions(
    log: pl.DataFrame, labels: pl.DataFrame, target: str, cutoff: datetime, maturity_days: int
) -> pl.DataFrame:
    """The first decision on each purchase made at least ``maturity_days`` before ``cutoff``,
    with ``bad`` = 1 when a ``target`` label was known before ``cutoff`` and the ``week``
    (Monday 00:00 UTC) of the purchase."""
    bad = (
        labels.filter((pl.col("label") == target) & (pl.col("label_ts") < cutoff))
        .select("transaction_id")
        .unique()
        .with_columns(bad=pl.lit(1, pl.Int8))
    )
    return (
        log.sort("scored_at")
        .unique("transaction_id", keep="first", maintain_order=True)
        .filter(pl.col("event_ts") <= cutoff - timedelta(days=maturity_days))
        .join(bad, on="transaction_id", how="left")
        .with_columns(pl.col("bad").fill_null(0), week=pl.col("event_ts").dt.truncate("1w"))
    )


def weekly_performance(
    decisions: pl.DataFrame, target: str, decline_at: float | dict[str, float]
) -> pl.DataFrame:
    """One row per (week, role, model, kind) of ``labelled_decisions``; ``decline_at``: the
    decline threshold, or one per model kind."""
    out = []
    for role, prefix in ROLES.items():
        score, model = f"{prefix}{target}_score", f"{prefix}{target}_model"
        if score not in decisions.columns:
            continue
        scored = decisions.filter(pl.col(score).is_not_null() & pl.col(model).is_not_null())
        keys = ["week", model, "model_kind"]
        for (week, name, kind), group in scored.group_by(keys, maintain_order=True):
            y, s = group["bad"].to_numpy(), group[score].to_numpy()
            declined = s >= (decline_at[kind] if isinstance(decline_at, dict) else decline_at)
            row = {
                "week": week,
                "target": target,
                "role": role,
                "model": name,
                "model_kind": kind,
                "rows": len(y),
                "bad": int(y.sum()),
                "auc": realized_auc(y, s),
                "precision_at_decline": float(y[declined].mean()) if declined.any() else None,
                "decline_rate": float(declined.mean()),
            }
            for decision in DECISIONS:  # what the served decision did (the shadow decided none)
                taken = (group["decision"] == decision).to_numpy() if role == "served" else None
                row[f"bad_rate_{decision}"] = (
                    float(y[taken].mean()) if taken is not None and taken.any() else None
                )
            row |= _behind_the_decline(group, y, s) if role == "served" else {}
            out.append(row)
    return pl.DataFrame(out, schema=PERFORMANCE_SCHEMA).sort("week", "role", "model")


def _behind_the_decline(group: pl.DataFrame, y: np.ndarray, s: np.ndarray) -> dict:
    """What production would measure, where a declined purchase never gets an outcome: the
    realized AUC on the purchases that went ahead (approved or reviewed, and the would-be
    declines the random holdout approved, each weighted by how many would-be declines it
    stands for), and the bad rate behind the decline line, from the holdout alone."""
    held = (
        group["holdout"].fill_null(False).to_numpy()
        if "holdout" in group.columns
        else np.zeros(len(y), dtype=bool)
    )
    weight = (
        group["holdout_weight"].fill_null(1.0).to_numpy()
        if "holdout_weight" in group.columns
        else np.ones(len(y))
    )
    went_ahead = (group["decision"] != "decline").to_numpy()
    seen_y, seen_s, seen_w = y[went_ahead], s[went_ahead], weight[went_ahead]
    observed = (
        float(roc_auc_score(seen_y, seen_s, sample_weight=seen_w))
        if 0 < seen_y.sum() < len(seen_y)
        else None
    )
    return {
        "auc_observed": observed,
        "holdout_rows": int(held.sum()),
        "bad_rate_behind_decline": float(y[held].mean()) if held.any() else None,
    }


PERFORMANCE_SCHEMA = {
    "week": pl.Datetime("us", "UTC"),
    "target": pl.String,
    "role": pl.String,
    "model": pl.String,
    "model_kind": pl.String,
    "rows": pl.Int64,
    "bad": pl.Int64,
    "auc": pl.Float64,
    "precision_at_decline": pl.Float64,
    "decline_rate": pl.Float64,
    **{f"bad_rate_{d}": pl.Float64 for d in DECISIONS},
    "auc_observed": pl.Float64,
    "holdout_rows": pl.Int64,
    "bad_rate_behind_decline": pl.Float64,
}


@dataclass(frozen=True)
class Comparison:
    """The champion against the version it replaced, on the same matured decisions."""

    rows: int
    bad: int
    weeks: int
    champion_auc: float | None
    previous_auc: float | None
    problem: str | None = None  # why the two could not be compared
    gap_bound: float | None = None  # auc_gap_bound: how far below the champion surely is


def compare_on_served_rows(
    decisions: pl.DataFrame,
    target: str,
    champion_label: str,
    champion: ScoringModel,
    previous: ScoringModel,
) -> Comparison:
    """Both versions' realized AUC on the matured decisions the champion made with its
    behavioural model: the champion's logged scores, and the previous version's scores of the
    same logged input vectors. The vectors must reproduce the champion's logged scores (they are
    the fraud model's input; a default model reading other columns cannot be rescored), and the
    previous version must read the same inputs with the same vocabularies."""
    rows = decisions.filter(
        (pl.col(f"{target}_model") == champion_label) & (pl.col("model_kind") == "behavioural")
    )
    y = rows["bad"].to_numpy()
    weeks = rows["week"].n_unique()

    def compared(problem: str | None = None, previous_scores=None) -> Comparison:
        scores = rows[f"{target}_score"].to_numpy()
        champion_auc = realized_auc(y, scores) if len(y) else None
        judged = previous_scores is not None
        return Comparison(
            len(y),
            int(y.sum()),
            weeks,
            champion_auc,
            realized_auc(y, previous_scores) if judged else None,
            problem,
            auc_gap_bound(y, scores, previous_scores) if judged else None,
        )

    names = champion.spec.feature_names
    same_inputs = (previous.spec.feature_names, previous.spec.vocabularies) == (
        names,
        champion.spec.vocabularies,
    )
    if not same_inputs:
        return compared("the previous version reads other inputs or vocabularies")
    if not set(names) <= set(rows.columns) or not len(y):
        return compared("the log holds no input vectors of the champion's")
    matrix = rows.select(names).to_numpy().astype(np.float64)
    if not np.allclose(champion.predict(matrix), rows[f"{target}_score"].to_numpy(), atol=1e-9):
        return compared("the logged vectors do not reproduce the champion's scores")
    return compared(None, previous.predict(matrix))
