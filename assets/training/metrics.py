"""How a risk model is judged on its test weeks: ranking (ROC AUC, PR AUC), the top of the
queue a review team works (precision at the top 1% / 5% -- the top 5% is the "high-risk"
queue --, recall at 1% false positives, lift of the top decile) and calibration (Brier score,
expected calibration error); and what the behavioural features add over the transaction-only
model on the same test rows (``margins``)."""

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve


def _precision_at(y: np.ndarray, score: np.ndarray, share: float) -> float:
    top = np.argsort(-score, kind="stable")[: max(1, round(share * len(score)))]
    return float(y[top].mean())


def _recall_at_fpr(y: np.ndarray, score: np.ndarray, fpr_limit: float) -> float:
    fpr, tpr, _ = roc_curve(y, score)
    return float(tpr[fpr <= fpr_limit].max(initial=0.0))


def calibration_bins(y: np.ndarray, score: np.ndarray, bins: int = 10) -> list[dict]:
    """Observed bad rate against mean score, per score decile (a reliability table)."""
    order = np.argsort(score, kind="stable")
    return [
        {"mean_score": float(score[part].mean()), "bad_rate": float(y[part].mean()), "n": len(part)}
        for part in np.array_split(order, bins)
        if len(part)
    ]


def evaluate(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=int)
    score = np.asarray(score, dtype=float)
    if y.min(initial=0) == y.max(initial=0):
        raise ValueError("the test weeks hold one class only: no ranking to judge")
    base = y.mean()
    table = calibration_bins(y, score)
    ece = sum(b["n"] * abs(b["mean_score"] - b["bad_rate"]) for b in table) / len(y)
    return {
        "roc_auc": float(roc_auc_score(y, score)),
        "pr_auc": float(average_precision_score(y, score)),
        "precision_at_1pct": _precision_at(y, score, 0.01),
        "precision_at_5pct": _precision_at(y, score, 0.05),
        "recall_at_1pct_fpr": _recall_at_fpr(y, score, 0.01),
        "top_decile_lift": _precision_at(y, score, 0.10) / base,
        "brier": float(brier_score_loss(y, score)),
        "expected_calibration_error": float(ece),
        "bad_rate": float(base),
        "rows": float(len(y)),
    }


# What a business reads off the comparison: points of ranking gained, and how many times better
# the top of the queue is.
_GAINS = ("roc_auc", "pr_auc", "recall_at_1pct_fpr", "precision_at_5pct")
_RATIOS = ("top_decile_lift", "precision_at_5pct", "recall_at_1pct_fpr")


def margins(behavioural: dict[str, float], transaction_only: dict[str, float]) -> dict[str, float]:
    """The behavioural model against the transaction-only one, judged on the same rows:
    ``<metric>_gain`` (difference) and ``<metric>_ratio`` (quotient; left out when the
    transaction-only model scores 0, as a tracking store takes no infinity)."""
    gains = {f"{m}_gain": behavioural[m] - transaction_only[m] for m in _GAINS}
    ratios = {
        f"{m}_ratio": behavioural[m] / transaction_only[m] for m in _RATIOS if transaction_only[m]
    }
    return gains | ratios
