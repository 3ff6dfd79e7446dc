"""A target's two models, as registered: behavioural (known customers) and transaction-only
(unknown customers, store outages), each a LightGBM booster with its spec, the snapshot
feature set the behavioural model reads (its columns, kinds and vocabularies: serving decodes
online records with it), and the review and decline thresholds chosen by cost on its
validation weeks (``riskcore/costs.py``; serving decides with them)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import lightgbm as lgb
import numpy as np

from riskcore.fast_predict import FastPredictor
from riskcore.feature_set import FeatureSet
from riskcore.model_spec import BEHAVIOURAL, TRANSACTION_ONLY, ModelSpec


@dataclass
class ScoringModel:
    spec: ModelSpec
    booster: lgb.Booster
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.booster.predict(
            np.asarray(rows, dtype=np.float64).reshape(-1, len(self.spec.feature_names))
        )

    @property
    def fast(self) -> FastPredictor:
        """The single-row path, one per thread (a fast predictor holds one output buffer)."""
        fast = getattr(self._local, "fast", None)
        if fast is None:
            fast = self._local.fast = FastPredictor(self.booster)
        return fast


@dataclass
class ModelBundle:
    target: str
    models: dict[str, ScoringModel]  # behavioural | transaction_only
    feature_set: FeatureSet | None = None
    # {"review", "decline", "costs", "chosen_on"}; None for a bundle saved before (built-in)
    thresholds: dict | None = None

    @property
    def behavioural(self) -> ScoringModel:
        return self.models[BEHAVIOURAL]

    @property
    def transaction_only(self) -> ScoringModel:
        return self.models[TRANSACTION_ONLY]

    @cached_property
    def feature_set_version(self) -> str:
        return self.behavioural.spec.feature_set_version

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for kind, model in self.models.items():
            (folder / f"{kind}.spec.json").write_text(model.spec.to_json())
            model.booster.save_model(str(folder / f"{kind}.lgb.txt"))
        if self.feature_set is not None:
            (folder / "feature_set.json").write_text(self.feature_set.to_json())
        if self.thresholds is not None:
            (folder / "thresholds.json").write_text(json.dumps(self.thresholds, indent=1))
        return folder

    @classmethod
    def load(cls, folder: Path) -> ModelBundle:
        models = {
            kind: ScoringModel(
                ModelSpec.from_json((folder / f"{kind}.spec.json").read_text()),
                lgb.Booster(model_file=str(folder / f"{kind}.lgb.txt")),
            )
            for kind in (BEHAVIOURAL, TRANSACTION_ONLY)
        }
        fs_file = folder / "feature_set.json"
        feature_set = FeatureSet.from_json(fs_file.read_text()) if fs_file.exists() else None
        chosen = folder / "thresholds.json"
        thresholds = json.loads(chosen.read_text()) if chosen.exists() else None
        return cls(models[BEHAVIOURAL].spec.target, models, feature_set, thresholds)
