"""A canary against the champion over the same period (docs/architecture.md#rollout).

The canary decides for its share of customers, the champion for the rest; both are compared on
the decisions each made since the canary started (the first decision per purchase): decline
and review rates, the PSI of the canary's scores against the champion's, and the bad rate
among approved purchases on the labels known so far (young: fraud labels keep arriving for
weeks, so this rate acts only on what has already come in). A limit crossed halts the canary;
a canary that stayed within every limit for the clean period, on enough decisions, is promoted
to full.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime

import polars as pl

from assets.monitoring.performance import labelled_decisions
from riskcore.psi import Reference, psi
from riskcore.registry import CANARY, CHAMPION

MIN_TO_JUDGE = 100  # canary decisions before any limit acts (a PSI on fewer is noise)


@dataclass(frozen=True)
class CanaryLimits:
    clean_hours: float
    min_decisions: int
    max_decline_rate_delta: float
    max_review_rate_delta: float
    max_score_psi: float
    max_bad_rate_delta: float

    @classmethod
    def from_settings(cls, env) -> CanaryLimits:
        """RISK_CANARY_<FIELD> for each field (RISK_CANARY_CLEAN_HOURS ...)."""
        return cls(**{f.name: getattr(env, f"canary_{f.name}") for f in fields(cls)})


@dataclass(frozen=True)
class Side:
    """One model's decisions over the period."""

    model: str | None
    decisions: int
    decline_rate: float | None
    review_rate: float | None
    approved_labelled_bad: int
    bad_rate_approved: float | None  # labels known so far, among approved purchases


@dataclass(frozen=True)
class CanaryComparison:
    target: str
    canary: Side
    champion: Side
    traffic_share: float  # of the target's decisions, the canary's
    score_psi: float | None  # the canary's scores against the champion's
    hours: float  # since the canary started
    verdict: str  # halt | promote | continue
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def _side(rows: pl.DataFrame, model_column: str, decision: str) -> Side:
    n = rows.height
    if not n:
        return Side(None, 0, None, None, 0, None)
    # Went ahead, so the outcome is seen; a held-out would-be decline is left out (there are
    # more of them on the side that declines more).
    approved = rows.filter(pl.col("decision") == "approve")
    if "holdout" in rows.columns:
        approved = approved.filter(~pl.col("holdout").fill_null(False))
    return Side(
        model=rows[model_column].mode().sort()[0],
        decisions=n,
        decline_rate=float((rows[decision] == "decline").mean()),
        review_rate=float((rows[decision] == "review").mean()),
        approved_labelled_bad=int(approved["bad"].sum()),
        bad_rate_approved=float(approved["bad"].mean()) if approved.height else None,
    )


def compare(
    log: pl.DataFrame,
    labels: pl.DataFrame,
    target: str,
    since: datetime,
    now: datetime,
    limits: CanaryLimits,
) -> CanaryComparison:
    """Judge a canary on the decisions logged from ``since`` to ``now``. ``log``: the inference
    log's rows (``transaction_id``, ``event_ts``, ``scored_at``, ``decision``,
    ``<target>_decision``, ``<target>_score``, ``<target>_model``, ``<target>_role``);
    ``labels``: ``transaction_id``, ``label``, ``label_ts``. Decline and review rates are the
    target's own decisions; the bad rate counts purchases that went ahead (the final decision
    approved them)."""
    score, role = f"{target}_score", f"{target}_role"
    in_period = (pl.col("scored_at") >= since) & (pl.col("scored_at") <= now)
    # Realized performance's join: the first decision per purchase, bad when a label came in
    # before now (no maturity: the labels so far).
    rows = labelled_decisions(
        log.filter(in_period & pl.col(score).is_not_null()), labels, target, now, maturity_days=0
    )
    canary_rows = rows.filter(pl.col(role) == CANARY)
    champion_rows = rows.filter(pl.col(role) == CHAMPION)
    # The target's own decisions (the other target's model does not blur them); a log
    # written before they were recorded has the combined one only.
    decision = f"{target}_decision" if f"{target}_decision" in log.columns else "decision"
    canary = _side(canary_rows, f"{target}_model", decision)
    champion = _side(champion_rows, f"{target}_model", decision)
    hours = (now - since).total_seconds() / 3600
    share = canary.decisions / rows.height if rows.height else 0.0
    score_psi = None
    if canary.decisions and champion.decisions:
        score_psi = psi(
            Reference.of(champion_rows[score].to_numpy()), canary_rows[score].to_numpy()
        )
    verdict, reason = _verdict(canary, champion, score_psi, hours, limits)
    return CanaryComparison(target, canary, champion, share, score_psi, hours, verdict, reason)


def _verdict(
    canary: Side, champion: Side, score_psi: float | None, hours: float, limits: CanaryLimits
) -> tuple[str, str]:
    if canary.decisions < MIN_TO_JUDGE or not champion.decisions:
        return "continue", (
            f"{canary.decisions} canary and {champion.decisions} champion decisions: limits act "
            f"from {MIN_TO_JUDGE} canary decisions"
        )
    crossed = []
    checks = (
        ("decline rate", canary.decline_rate, champion.decline_rate, limits.max_decline_rate_delta),
        ("review rate", canary.review_rate, champion.review_rate, limits.max_review_rate_delta),
        (
            "bad rate among approved (labels so far)",
            canary.bad_rate_approved,
            champion.bad_rate_approved,
            limits.max_bad_rate_delta,
        ),
    )
    for name, theirs, ours, limit in checks:
        if theirs is not None and ours is not None and theirs - ours > limit:
            crossed.append(f"{name} {theirs:.2%} vs champion's {ours:.2%} (limit +{limit:.2%})")
    if score_psi is not None and score_psi > limits.max_score_psi:
        crossed.append(
            f"score PSI {score_psi:.3f} against the champion's (limit {limits.max_score_psi})"
        )
    on = f"on {canary.decisions:,} canary and {champion.decisions:,} champion decisions"
    if crossed:
        return "halt", "; ".join(crossed) + f", {on} over {hours:.1f} h"
    if hours >= limits.clean_hours and canary.decisions >= limits.min_decisions:
        return (
            "promote",
            f"within every limit for {hours:.1f} h (clean period {limits.clean_hours:g} h) {on}",
        )
    return "continue", (
        f"within every limit so far, {on} over {hours:.1f} h: promoted after "
        f"{limits.clean_hours:g} h and {limits.min_decisions:,} canary decisions"
    )


def markdown(comparisons: list[CanaryComparison]) -> str:
    """Canary against champion, per target, for the asset's page."""
    pct = lambda v: "-" if v is None else f"{v:.2%}"  # noqa: E731
    lines = [
        "| target | model | role | decisions | share | decline rate | review rate | "
        "bad rate among approved (labels so far) | score PSI | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        psi_cell = "-" if c.score_psi is None else f"{c.score_psi:.3f}"
        for role, side in ((CANARY, c.canary), (CHAMPION, c.champion)):
            share = c.traffic_share if role == CANARY else 1 - c.traffic_share
            verdict = c.verdict if role == CANARY else ""
            lines.append(
                f"| {c.target} | {side.model or '-'} | {role} | {side.decisions:,} | "
                f"{pct(share)} | {pct(side.decline_rate)} | {pct(side.review_rate)} | "
                f"{pct(side.bad_rate_approved)} | {psi_cell if role == CANARY else '-'} | "
                f"{verdict} |"
            )
    return "\n".join(lines)
