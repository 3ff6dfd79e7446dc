"""Negative down-sampling of the training weeks (docs/architecture.md#training).

Fraud is a fraction of a percent of purchases: most of a full training set is easy negatives,
which cost time and teach little. A model may learn from every positive and a share of the
negatives, each kept negative weighted by 1 / that share, so the weighted rows stand for the
full set and the scores stay calibrated probabilities. Only the training weeks are sampled:
early stopping, the cost thresholds, the gate and every reported metric use the full
validation and test weeks.

The draw is seeded and made over the training set in its stored order (purchase time, then
id: ``read_training_set``), so one training set and one seed give one sample; both are
recorded with the model in MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskcore import settings


@dataclass(frozen=True)
class NegativeSampling:
    share: float = 1.0  # of the negatives kept; 1: every row, no sampling
    seed: int = 7

    def apply(self, part: pa.Table, label: str) -> pa.Table:
        """Every positive, ``share`` of the negatives; the kept negatives' ``sample_weight``
        multiplied by 1 / share (after any weight they carried, e.g. a holdout's)."""
        if self.share >= 1.0:
            return part
        bad = pc.fill_null(part[label], False).to_numpy(zero_copy_only=False).astype(bool)
        drawn = np.random.default_rng(self.seed).random(part.num_rows) < self.share
        keep = bad | drawn
        weight = (
            part["sample_weight"].to_numpy(zero_copy_only=False).astype(np.float64)
            if "sample_weight" in part.column_names
            else np.ones(part.num_rows)
        )
        weight = np.where(bad, weight, weight / self.share)
        column = pa.array(weight, pa.float64())
        if "sample_weight" in part.column_names:
            part = part.set_column(
                part.schema.get_field_index("sample_weight"), "sample_weight", column
            )
        else:
            part = part.append_column("sample_weight", column)
        return part.filter(pa.array(keep))

    @classmethod
    def from_settings(cls) -> NegativeSampling:
        """RISK_NEGATIVE_SHARE, RISK_NEGATIVE_SEED."""
        env = settings.load()
        return cls(env.negative_share, env.negative_seed)

    def params(self) -> dict[str, float | int]:
        """MLflow parameters: how the training weeks were sampled."""
        return {"sampling.negative_share": self.share, "sampling.seed": self.seed}
