"""Thresholds chosen by cost (riskcore/costs.py) against a brute-force search."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskcore.costs import CostModel, choose_thresholds, decisions, outcome, trade_off
from riskcore.targets import BUILT_IN, TargetThresholds, Thresholds

FRAUD = CostModel("fraud", review_cost=5.0, false_decline_margin=0.03, churn_cost=10.0)
DEFAULT = CostModel("default", review_cost=5.0, false_decline_margin=0.05, loss_given_default=0.7)


def brute_force(scores, bad, amount, costs, max_review_rate=1.0):
    """Every pair of thresholds worth trying (each distinct score, and one above them all)
    that reviews at most ``max_review_rate`` of the purchases, each purchase's cost summed by
    the rule serving applies."""
    candidates = sorted({*scores.tolist(), 2.0})
    best = None
    for review in candidates:
        for decline in candidates:
            reviewed = sum(review <= s < decline for s in scores)
            if review > decline or reviewed > max_review_rate * len(scores) + 1e-9:
                continue
            total = 0.0
            for s, b, a in zip(scores, bad, amount, strict=True):
                if s >= decline:
                    total += 0.0 if b else a * costs.false_decline_margin + costs.churn_cost
                elif s >= review:
                    total += costs.review_cost
                elif b:
                    total += a if costs.target == "fraud" else a * costs.loss_given_default
            if best is None or total < best - 1e-9:
                best = total
    return best


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from([0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99]),  # ties happen
            st.booleans(),
            st.floats(1, 2000),
        ),
        min_size=1,
        max_size=30,
    ),
    target=st.sampled_from(["fraud", "default"]),
    capacity=st.sampled_from([1.0, 0.25, 0.1, 0.0]),
)
def test_the_chosen_thresholds_cost_what_the_brute_force_minimum_costs(rows, target, capacity):
    scores, bad, amount = (np.array(c) for c in zip(*rows, strict=True))
    costs = FRAUD if target == "fraud" else DEFAULT
    chosen = choose_thresholds(scores, bad, amount, costs, capacity)
    minimum = brute_force(scores, bad, amount, costs, capacity)
    assert chosen.total_cost == pytest.approx(minimum, abs=1e-6)
    assert chosen.review_rate <= capacity + 1e-9
    # The thresholds reported are the ones that cost it, by serving's rule.
    again = outcome(scores, bad, amount, costs, chosen.review, chosen.decline)
    assert again.total_cost == pytest.approx(chosen.total_cost, abs=1e-6)
    assert 0 <= chosen.review <= chosen.decline


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from([0.01, 0.1, 0.3, 0.5, 0.9]),
            st.booleans(),
            st.floats(1, 2000),
            st.integers(1, 4),
        ),
        min_size=1,
        max_size=20,
    ),
    capacity=st.sampled_from([1.0, 0.2, 0.0]),
)
def test_a_weighted_purchase_counts_as_that_many_purchases(rows, capacity):
    """A held-out decline of weight k costs, counts towards the rates and fills the review
    capacity as k copies of itself would."""
    scores, bad, amount, weight = (np.array(c) for c in zip(*rows, strict=True))
    weighted = choose_thresholds(scores, bad, amount, FRAUD, capacity, weight.astype(float))
    copies = [np.repeat(c, weight) for c in (scores, bad, amount)]
    repeated = choose_thresholds(*copies, FRAUD, capacity)
    assert weighted.total_cost == pytest.approx(repeated.total_cost, abs=1e-6)
    assert (weighted.review, weighted.decline) == (repeated.review, repeated.decline)
    for rate in ("approval_rate", "review_rate", "decline_rate", "expected_cost"):
        assert getattr(weighted, rate) == pytest.approx(getattr(repeated, rate))


def test_known_costs_give_the_known_thresholds():
    """Fraud scores 0.1 good, 0.5 mixed, 0.9 fraud; a review costs less than the mixed band's
    expected loss, a decline of a 0.9 purchase saves its amount: review from the middle band,
    decline the top band."""
    scores = np.array([0.1] * 50 + [0.5] * 10 + [0.9] * 10)
    bad = np.array([0] * 50 + [1, 1, 1] + [0] * 7 + [1] * 9 + [0])
    amount = np.full(len(scores), 100.0)
    chosen = choose_thresholds(scores, bad, amount, FRAUD)
    assert decisions(np.array([0.1, 0.5, 0.9]), chosen.review, chosen.decline).tolist() == [0, 1, 2]
    # Reviews 10 x 5, one false decline 3 + 10, nothing missed.
    assert chosen.total_cost == pytest.approx(50 + 13)
    assert chosen.approval_rate == pytest.approx(50 / 70)
    assert chosen.bad_rate_approved == 0.0


def test_the_trade_off_curve_keeps_the_capacity_and_its_lowest_point_is_the_choice():
    rng = np.random.default_rng(5)
    scores = rng.beta(0.5, 20, size=20_000)
    bad = rng.uniform(size=20_000) < scores
    amount = rng.lognormal(4, 1, size=20_000)
    chosen = choose_thresholds(scores, bad, amount, FRAUD, 0.01)
    curve = trade_off(scores, bad, amount, FRAUD, 0.01)
    assert all(point.review_rate <= 0.01 + 1e-9 for point in curve)
    assert min(point.expected_cost for point in curve) == pytest.approx(chosen.expected_cost)
    assert chosen.decline in {point.decline for point in curve}


def test_expensive_reviews_are_never_chosen():
    rng = np.random.default_rng(3)
    scores = rng.uniform(size=500)
    bad = rng.uniform(size=500) < scores / 4
    costs = CostModel("fraud", review_cost=1e6, false_decline_margin=0.03, churn_cost=10.0)
    chosen = choose_thresholds(scores, bad, np.full(500, 50.0), costs)
    assert chosen.review_rate == 0.0


def test_the_environment_overrides_only_what_is_set():
    chosen = {"review": 0.1, "decline": 0.4}
    assert Thresholds().resolve("fraud", chosen) == TargetThresholds(0.1, 0.4, "model")
    assert Thresholds().resolve("fraud", None) == TargetThresholds(*BUILT_IN["fraud"], "built-in")
    overridden = Thresholds(fraud_decline=0.8).resolve("fraud", chosen)
    assert overridden == TargetThresholds(0.1, 0.8, "environment")
    assert Thresholds(fraud_decline=0.8).resolve("default", chosen).source == "model"
    assert TargetThresholds(0.1, 1.5, "model").decide(0.999) == "review"  # never declines
    # A decline threshold set below the model's review one: nothing reviewed, never an error.
    crossed = Thresholds(fraud_decline=0.3).resolve("fraud", {"review": 0.45, "decline": 0.9})
    assert crossed == TargetThresholds(0.3, 0.3, "environment")
