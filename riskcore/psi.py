"""Population stability index (PSI): how far a current distribution has moved from a
reference one, bin by bin: ``sum((cur - ref) * ln(cur / ref))`` over the bins' shares.

Binning (the same for every caller, so values are comparable over time):

- Bins are the reference's quantiles: ``bins`` (10) equal-share bins of the reference's
  non-null values; their inner edges are kept with the reference (a model logs them), and the
  outer bins are open, so a current value beyond the reference's range lands in an end bin
  instead of being dropped. Repeated quantiles (a heavy value, a constant column) merge bins.
- Nulls are a bin of their own: a column that starts arriving empty has drifted.
- An empty bin gets the share ``EPSILON`` (1e-4, evidently's floor too), so the logarithm
  stays finite; a brand-new bin's contribution is then large but bounded.

Reading it: < 0.1 stable, 0.1-0.2 a moderate shift (warn), > 0.2 a significant shift (act).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPSILON = 1e-4
BINS = 10


@dataclass(frozen=True)
class Reference:
    """What a reference distribution keeps: the inner bin edges and each bin's share (the last
    share is the null bin's)."""

    edges: np.ndarray
    shares: np.ndarray

    @classmethod
    def of(cls, values, bins: int = BINS) -> Reference:
        values = np.asarray(values, dtype=float)
        present = values[~np.isnan(values)]
        if not len(present):
            edges = np.array([])
        elif present.min() == present.max():  # a constant: its own bin, a move either way shows
            edges = np.array([present[0], np.nextafter(present[0], np.inf)])
        else:
            edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
        return cls(edges, shares(values, edges))

    def to_dict(self) -> dict:
        return {"edges": self.edges.tolist(), "shares": self.shares.tolist()}

    @classmethod
    def from_dict(cls, doc: dict) -> Reference:
        return cls(np.asarray(doc["edges"], float), np.asarray(doc["shares"], float))


def shares(values, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each bin of ``edges`` (open outer bins), then the null share.
    A value equal to an edge belongs to the bin above it (``searchsorted(side="right")``),
    the same rule for reference and current."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return np.zeros(len(edges) + 2)
    null = np.isnan(values)
    counts = np.bincount(
        np.searchsorted(edges, values[~null], side="right"), minlength=len(edges) + 1
    )
    return np.append(counts, null.sum()) / len(values)


def psi(reference: Reference, current, epsilon: float = EPSILON) -> float:
    """PSI of ``current`` values against ``reference``: 0.0 for identical shares, NaN when
    there is no current value to compare (no data is not "no drift")."""
    current = np.asarray(current, dtype=float)
    if not len(current):
        return float("nan")
    ref = np.maximum(reference.shares, epsilon)
    cur = np.maximum(shares(current, reference.edges), epsilon)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def psi_of(reference_values, current_values, bins: int = BINS) -> float:
    """PSI with the bins taken from ``reference_values``."""
    return psi(Reference.of(reference_values, bins), current_values)
