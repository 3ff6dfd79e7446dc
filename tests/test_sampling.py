"""Negative down-sampling of the training weeks (assets/training/sampling.py)."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.training.sampling import NegativeSampling


def _part(labels: list[bool], weights: list[float]) -> pa.Table:
    return pa.table(
        {
            "transaction_id": [f"t{i}" for i in range(len(labels))],
            "fraud_label": pa.array(labels, pa.bool_()),
            "sample_weight": pa.array(weights, pa.float64()),
        }
    )


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.tuples(st.booleans(), st.sampled_from([1.0, 20.0])), max_size=300),
    share=st.sampled_from([0.05, 0.3, 0.999]),
    seed=st.integers(0, 1000),
)
def test_every_positive_is_kept_and_kept_negatives_carry_one_over_the_share(rows, share, seed):
    labels = [bad for bad, _ in rows]
    part = _part(labels, [w for _, w in rows])
    sampled = NegativeSampling(share, seed).apply(part, "fraud_label")
    kept = dict(zip(sampled["transaction_id"].to_pylist(), sampled.to_pylist(), strict=True))
    for row in part.to_pylist():
        if row["fraud_label"]:  # every positive, its weight as it was
            assert kept[row["transaction_id"]]["sample_weight"] == row["sample_weight"]
        elif row["transaction_id"] in kept:  # a kept negative stands for 1 / share of them
            weight = kept[row["transaction_id"]]["sample_weight"]
            assert weight == pytest.approx(row["sample_weight"] / share)
    # Seeded: the same draw again; the order of rows is kept.
    assert NegativeSampling(share, seed).apply(part, "fraud_label") == sampled
    ids = sampled["transaction_id"].to_pylist()
    assert ids == sorted(ids, key=lambda t: int(t[1:]))


def test_the_share_kept_and_the_weighted_total_match_the_full_set():
    rng = np.random.default_rng(1)
    labels = (rng.random(200_000) < 0.003).tolist()
    part = _part(labels, [1.0] * len(labels))
    sampled = NegativeSampling(0.1, 7).apply(part, "fraud_label")
    negatives = len(labels) - sum(labels)
    kept_negatives = sampled.num_rows - sum(labels)
    assert kept_negatives / negatives == pytest.approx(0.1, abs=0.005)
    weighted = sum(sampled["sample_weight"].to_pylist())
    assert weighted == pytest.approx(len(labels), rel=0.02)
    assert NegativeSampling(0.1, 8).apply(part, "fraud_label") != sampled  # another seed
    assert NegativeSampling(1.0, 7).apply(part, "fraud_label") is part  # off: untouched
