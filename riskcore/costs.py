"""What a decision costs, and the thresholds that cost least (docs/architecture.md#thresholds).

Per purchase, in the settlement currency:

==========  ===================================  ==========================================
decision    fraud                                default (instalment plans)
==========  ===================================  ==========================================
approve     the amount, when it is fraud         amount x loss-given-default, when it
                                                 defaults
review      a fixed review cost (the analyst      the same review cost
            stops a bad purchase, passes a good
            one)
decline     margin x amount + churn cost, when   BNPL margin x amount, when it would
            it was good                          have been repaid
==========  ===================================  ==========================================

``choose_thresholds`` finds the (review, decline) pair that minimises the total over a set of
scored, labelled purchases exactly (every distinct score is a candidate), in O(n log n), with
at most a given share sent to review (a review team's capacity, RISK_MAX_REVIEW_RATE). A
purchase may carry a weight (with RISK_CENSOR_DECLINES, a held-out would-be decline stands for
1 / the share held out): it counts as that many purchases in costs, rates and the capacity. Each
target's thresholds are chosen on its own purchases; serving combines the two decisions as
before (decline if either declines, else review if either reviews).
"""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from riskcore.settings import Settings


@dataclass(frozen=True)
class CostModel:
    target: str
    review_cost: float  # a manual review, whatever its outcome
    false_decline_margin: float  # share of a good purchase's amount lost when declined
    churn_cost: float = 0.0  # fraud: a good customer declined may leave
    loss_given_default: float = 1.0  # default: share of the amount lost when a plan defaults

    @classmethod
    def from_settings(cls, target: str, env: Settings) -> CostModel:
        """RISK_REVIEW_COST; fraud: RISK_FALSE_DECLINE_MARGIN, RISK_CHURN_COST; default:
        RISK_BNPL_MARGIN, RISK_LOSS_GIVEN_DEFAULT."""
        return cls(
            target,
            review_cost=env.review_cost,
            false_decline_margin=(
                env.false_decline_margin if target == "fraud" else env.bnpl_margin
            ),
            churn_cost=env.churn_cost if target == "fraud" else 0.0,
            loss_given_default=env.loss_given_default if target == "default" else 1.0,
        )

    def per_decision(self, bad: np.ndarray, amount: np.ndarray) -> np.ndarray:
        """Each purchase's cost if approved, reviewed, declined: an (n, 3) array."""
        bad = np.asarray(bad, dtype=bool)
        amount = np.asarray(amount, dtype=np.float64)
        loss = amount if self.target == "fraud" else amount * self.loss_given_default
        approve = np.where(bad, loss, 0.0)
        review = np.full(len(bad), self.review_cost)
        decline = np.where(bad, 0.0, amount * self.false_decline_margin + self.churn_cost)
        return np.column_stack([approve, review, decline])

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Outcome:
    """What a pair of thresholds does to a set of purchases."""

    review: float
    decline: float
    rows: int
    approval_rate: float
    review_rate: float
    decline_rate: float
    bad_rate_approved: float | None  # None when nothing is approved
    expected_cost: float  # per purchase
    total_cost: float

    def as_dict(self) -> dict:
        return asdict(self)


def decisions(scores: np.ndarray, review: float, decline: float) -> np.ndarray:
    """0 approve, 1 review, 2 decline: at or above ``decline`` declines, else at or above
    ``review`` reviews (serving's rule)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.where(scores >= decline, 2, np.where(scores >= review, 1, 0))


def _weights(scores: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    return np.ones(len(scores)) if weight is None else np.asarray(weight, dtype=np.float64)


def outcome(
    scores: np.ndarray,
    bad: np.ndarray,
    amount: np.ndarray,
    costs: CostModel,
    review,
    decline,
    weight: np.ndarray | None = None,
) -> Outcome:
    taken = decisions(scores, review, decline)
    w = _weights(taken, weight)
    per = costs.per_decision(bad, amount) * w[:, None]
    total = float(per[np.arange(len(taken)), taken].sum())
    bad = np.asarray(bad, dtype=bool)
    approved = taken == 0
    n = max(float(w.sum()), 1e-12)
    return Outcome(
        review=float(review),
        decline=float(decline),
        rows=len(taken),
        approval_rate=float(w[approved].sum() / n),
        review_rate=float(w[taken == 1].sum() / n),
        decline_rate=float(w[taken == 2].sum() / n),
        bad_rate_approved=float(w[approved & bad].sum() / w[approved].sum())
        if w[approved].sum() > 0
        else None,
        expected_cost=total / n,
        total_cost=total,
    )


def _candidates(scores: np.ndarray, per: np.ndarray, w: np.ndarray):
    """Distinct scores ascending, each one's summed costs per decision and weight, and the
    threshold that puts exactly the scores from the k-th distinct one up on the high side:
    halfway between neighbours (robust to a new score falling between them), 0 for the
    lowest, and above every score (nothing on the high side: can exceed 1) for k = m."""
    order = np.argsort(scores, kind="stable")
    values, first = np.unique(scores[order], return_index=True)
    sums = np.add.reduceat(per[order], first, axis=0) if len(order) else np.zeros((0, 3))
    counts = np.add.reduceat(w[order], first) if len(order) else np.zeros(0)
    cuts = np.empty(len(values) + 1)
    cuts[0] = 0.0 if len(values) == 0 or values[0] > 0 else values[0]
    cuts[1:-1] = (values[:-1] + values[1:]) / 2
    cuts[-1] = values[-1] + max(1e-9, abs(values[-1]) * 1e-9) if len(values) else 1.0
    return values, sums, counts, cuts


def _search(
    scores: np.ndarray,
    bad: np.ndarray,
    amount: np.ndarray,
    costs: CostModel,
    max_review_rate: float,
    weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every decline cut j (``cuts``), the review cut ``best_i[j]`` of least total cost
    that sends at most ``max_review_rate`` of the purchases to review (a review team's
    capacity), and that ``total``, exact: with the distinct scores sorted and i <= j the first
    review and the first decline index, the total is ``A[i] + R[j] - R[i] + D[m] - D[j]``
    (prefix sums of each decision's cost), so for each j the best i is the minimum of
    ``A[i] - R[i]`` over the i whose review count fits, a window that only moves up as j does
    (a monotonic queue). Ties go to fewer reviews and declines (the higher thresholds)."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) == 0:
        raise ValueError("no purchases to choose thresholds on")
    if np.isnan(scores).any():
        raise ValueError("scores hold NaN")
    w = _weights(scores, weight)
    per = costs.per_decision(bad, amount) * w[:, None]
    values, sums, counts, cuts = _candidates(scores, per, w)
    m = len(values)
    prefix = np.vstack([np.zeros(3), np.cumsum(sums, axis=0)])  # (m + 1, 3)
    approve, review, decline = prefix[:, 0], prefix[:, 1], prefix[:, 2]
    below = np.concatenate([[0], np.cumsum(counts)])  # purchases under each candidate
    capacity = max_review_rate * w.sum() + 1e-9
    key = approve - review
    best_i = np.zeros(m + 1, dtype=np.int64)
    window: collections.deque[int] = collections.deque()
    low = 0
    for j in range(m + 1):
        while window and key[j] <= key[window[-1]]:
            window.pop()
        window.append(j)
        while below[j] - below[low] > capacity:  # reviews from low to j exceed the capacity
            low += 1
        while window[0] < low:
            window.popleft()
        best_i[j] = window[0]
    total = key[best_i] + review + decline[m] - decline
    return cuts, best_i, total


def choose_thresholds(
    scores: np.ndarray,
    bad: np.ndarray,
    amount: np.ndarray,
    costs: CostModel,
    max_review_rate: float = 1.0,
    weight: np.ndarray | None = None,
) -> Outcome:
    """The (review, decline) pair of least total cost that sends at most ``max_review_rate``
    of the purchases to review (``_search``)."""
    cuts, best_i, total = _search(scores, bad, amount, costs, max_review_rate, weight)
    j = int(np.flatnonzero(total <= total.min() + 1e-9 * max(1.0, abs(total.min())))[-1])
    return outcome(scores, bad, amount, costs, cuts[best_i[j]], cuts[j], weight)


def trade_off(
    scores: np.ndarray,
    bad: np.ndarray,
    amount: np.ndarray,
    costs: CostModel,
    max_review_rate: float = 1.0,
    points: int = 41,
    weight: np.ndarray | None = None,
) -> list[Outcome]:
    """Expected cost and approval rate as the decline threshold moves, from declining 0.01% to
    half of the purchases (log-spaced shares: risk scores crowd near 0), each with its best
    review threshold within the review capacity, and the chosen point: the curve a risk team
    reads the choice off."""
    scores = np.asarray(scores, dtype=np.float64)
    cuts, best_i, total = _search(scores, bad, amount, costs, max_review_rate, weight)
    chosen = int(np.flatnonzero(total <= total.min() + 1e-9 * max(1.0, abs(total.min())))[-1])
    grid = np.quantile(scores, 1 - np.geomspace(1e-4, 0.5, points))
    js = {*np.searchsorted(cuts, grid).clip(0, len(cuts) - 1).tolist(), chosen}
    return [
        outcome(scores, bad, amount, costs, cuts[best_i[j]], cuts[j], weight) for j in sorted(js)
    ]
