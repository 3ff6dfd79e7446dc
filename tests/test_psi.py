"""PSI: zero for identical data, the analytic value for shifted normals, bounded with empty
bins, clear results for constant and all-null columns, and equal to evidently's PSI when binned
alike (close to it with our own decile bins)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from riskcore.psi import EPSILON, Reference, psi, psi_of, shares

RNG = np.random.default_rng(11)


def test_identical_distributions_give_zero():
    values = RNG.lognormal(3, 1, 50_000)
    assert psi_of(values, values) == 0.0
    assert psi_of(values, RNG.permutation(values)) == 0.0


@pytest.mark.parametrize("shift", [0.1, 0.25, 0.5, 1.0])
def test_shifted_normals_give_the_analytic_value(shift):
    """Reference N(0,1) with its exact deciles as bins; current N(shift, 1): each bin's
    current share is a difference of normal CDFs, so the PSI is known in closed form."""
    edges = norm.ppf(np.linspace(0, 1, 11)[1:-1])
    bounds = np.concatenate([[-np.inf], edges, [np.inf]])
    q = np.diff(norm.cdf(bounds - shift))
    analytic = float(np.sum((q - 0.1) * np.log(q / 0.1)))
    reference = Reference.of(RNG.normal(0, 1, 400_000))
    measured = psi(reference, RNG.normal(shift, 1, 400_000))
    assert measured == pytest.approx(analytic, rel=0.05, abs=0.002)


def test_an_empty_bin_is_floored_at_epsilon_not_infinite():
    reference = Reference.of(np.arange(1000.0))
    current = np.full(500, 2000.0)  # every current value beyond the reference's top decile
    value = psi(reference, current)
    top = reference.shares[-2]  # the open top bin holds 10% of the reference
    expected = (1 - top) * math.log(1 / top) + sum(
        (EPSILON - s) * math.log(EPSILON / s) for s in reference.shares[:-2]
    )
    assert math.isfinite(value) and value == pytest.approx(expected)
    assert value > 0.2


def test_a_constant_column_is_stable_until_it_moves_either_way():
    reference = Reference.of(np.full(1000, 5.0))
    assert psi(reference, np.full(300, 5.0)) == 0.0
    assert psi(reference, np.full(300, 6.0)) > 1
    assert psi(reference, np.full(300, 4.0)) > 1


def test_all_null_columns_give_a_clear_result():
    reference = Reference.of(np.full(1000, np.nan))
    assert list(reference.shares) == [0.0, 1.0]
    assert psi(reference, np.full(10, np.nan)) == 0.0
    assert psi(reference, np.ones(10)) > 1  # values where there were none: drift
    filled = Reference.of(np.arange(100.0))
    assert psi(filled, np.full(100, np.nan)) > 1  # a column arriving empty: drift
    assert math.isnan(psi(filled, []))  # nothing to compare is not "no drift"


def test_values_on_edges_and_beyond_the_range_are_counted():
    reference = Reference(np.array([1.0, 2.0]), np.array([0.25, 0.5, 0.25, 0.0]))
    assert list(shares([0.5, 1.0, 2.0, 9.0, np.nan], reference.edges)) == [0.2, 0.2, 0.4, 0.2]


def _evidently_psi(reference: np.ndarray, current: np.ndarray) -> float:
    from evidently.legacy.calculations.stattests import psi_stat_test
    from evidently.legacy.core import ColumnType

    result = psi_stat_test.func(pd.Series(reference), pd.Series(current), ColumnType.Numerical, 0.1)
    return float(result[0])


@pytest.mark.parametrize("power", [1.0, 0.8, 0.5])
def test_our_psi_equals_evidentlys_when_binned_alike(power):
    """evidently (method="psi") bins numeric columns by Sturges edges over reference and
    current together: with those bins, ours gives its value exactly. (The two differ only in
    empty or tiny bins, absent here: evidently fills an empty bin with the smallest non-empty
    share / 1e6 when that share is <= 1e-4, else 1e-4; ours floors every bin at 1e-4.)"""
    reference, current = RNG.random(20_000), RNG.random(20_000) ** power
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    binned = Reference(edges[1:-1], shares(reference, edges[1:-1]))
    assert psi(binned, current) == pytest.approx(_evidently_psi(reference, current), rel=1e-9)


@pytest.mark.parametrize("shift", [0.2, 0.5, 1.0])
def test_our_decile_psi_is_close_to_evidentlys(shift):
    """With our bins (reference deciles) and evidently's (Sturges, ~16 equal-width bins over
    both samples) the values differ by binning only: within 25% on smooth shifts, and both
    on the same side of the 0.1 / 0.2 thresholds here."""
    reference, current = RNG.normal(0, 1, 20_000), RNG.normal(shift, 1, 20_000)
    ours, theirs = psi_of(reference, current), _evidently_psi(reference, current)
    assert ours == pytest.approx(theirs, rel=0.25)
    assert (ours > 0.1) == (theirs > 0.1) and (ours > 0.2) == (theirs > 0.2)
